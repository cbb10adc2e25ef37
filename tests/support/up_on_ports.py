"""The `imi` command with the services' default ports moved (``IMI_TEST_PORTS``, e.g.
``registry=9101,exchange=9102,...``), so a test can run `imi up` beside a developer's own."""

from __future__ import annotations

import os

from services.cli import app
from shared.settings import DEFAULT_PORTS

if __name__ == "__main__":
    for item in os.environ["IMI_TEST_PORTS"].split(","):
        service, port = item.split("=")
        assert service in DEFAULT_PORTS, service
        DEFAULT_PORTS[service] = int(port)  # the launcher reads this very mapping
    app(prog_name="imi")
