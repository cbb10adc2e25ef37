"""An SMTP server on loopback for the benchmarks: an aiosmtpd Controller that accepts every message
and appends one JSON line per message to a file: arrival time (``time.time()``, the clock the
benchmark reads too), Message-ID, the request reference named in the subject, and the recipients.

Run as ``python -m bench.smtp_sink --port PORT --out FILE``; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.controller import Controller

REFERENCE = re.compile(r"REQ-\d{4}-\d{6}")


class Recorder:
    def __init__(self, out: str) -> None:
        self._out = open(out, "a", buffering=1)  # noqa: SIM115 (kept open for the server's life)
        self._parser = BytesHeaderParser()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.time()
        headers = self._parser.parsebytes(envelope.content)
        subject = str(make_header(decode_header(headers.get("Subject", ""))))
        found = REFERENCE.search(subject)
        line = json.dumps(
            {
                "t": arrived,
                "message_id": headers.get("Message-ID"),
                "reference": found.group(0) if found else None,
                "rcpt": envelope.rcpt_tos,
                "bytes": len(envelope.content),
            }
        )
        with self._lock:
            self._out.write(line + "\n")
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    controller = Controller(Recorder(args.out), hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
