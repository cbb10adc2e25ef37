"""How `imi up` and `imi serve` have uvicorn serve the services (services/launcher.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.launcher import PortInUse, check_ports_free, server_config
from shared.settings import DEFAULT_PORTS, Settings
from tests.support import free_port


async def client_address_seen(config, peer: str, forwarded: str) -> str:  # type: ignore[no-untyped-def]
    """The client address a request from ``peer`` carrying X-Forwarded-For: ``forwarded`` gets
    into the app as, through the middleware uvicorn puts in front of it."""
    config.load()
    assert isinstance(config.loaded_app, ProxyHeadersMiddleware)
    seen: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config.loaded_app.app = app  # the service behind the same middleware, reduced to one echo
    transport = httpx.ASGITransport(app=config.loaded_app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        await client.get("/", headers={"X-Forwarded-For": forwarded})
    return seen[0]


@pytest.mark.parametrize(
    ("allowed", "peer", "expected"),
    [
        ("127.0.0.1", "10.2.3.4", "10.2.3.4"),  # the default believes no ingress
        ("10.0.0.0/8", "10.2.3.4", "203.0.113.9"),  # the ingress's network is believed
        ("10.0.0.0/8", "192.0.2.50", "192.0.2.50"),  # anyone else forging the header is not
    ],
)
async def test_the_client_address_comes_from_the_allowed_proxies_only(tmp_path, allowed, peer, expected):
    settings = Settings(data_dir=tmp_path, forwarded_allow_ips=allowed)
    config = server_config("registry", settings, 8001)
    assert await client_address_seen(config, peer, "203.0.113.9") == expected


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process (here: this test) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_another_process_listens_on_is_refused_by_name(taken_port):
    spare = free_port()
    check_ports_free({"exchange": ("127.0.0.1", spare)})
    with pytest.raises(PortInUse, match=f"port {taken_port} on 127.0.0.1 \\(retention\\) is in use"):
        check_ports_free({"exchange": ("127.0.0.1", spare), "retention": ("127.0.0.1", taken_port)})


@pytest.mark.parametrize(
    ("command", "variable", "named"),
    [
        (["serve", "retention", "--migrate"], "IMI_HTTP_PORT", "retention"),
        (["up"], "IMI_SMTP_PORT", "the local SMTP sink"),
    ],
)
def test_imi_refuses_to_start_on_a_taken_port_in_one_line_and_migrates_nothing(
    tmp_path, monkeypatch, taken_port, command, variable, named
):
    from typer.testing import CliRunner

    from services.cli import app

    for name in [name for name in os.environ if name.startswith("IMI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, str(taken_port))
    # A developer's `imi up` may hold the default ports; only the port taken here is to be named.
    monkeypatch.setattr("services.launcher.DEFAULT_PORTS", {service: free_port() for service in DEFAULT_PORTS})
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1, result.output
    assert f"error: port {taken_port} on 127.0.0.1 ({named}) is in use by another process" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.db")), "nothing is migrated before the ports are known to be free"


def test_a_configuration_error_is_named_before_a_taken_port(monkeypatch, taken_port):
    from typer.testing import CliRunner

    from services.cli import app

    for name in [name for name in os.environ if name.startswith("IMI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMI_ENVIRONMENT", "production")
    monkeypatch.setenv("IMI_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.setenv("IMI_HTTP_PORT", str(taken_port))
    result = CliRunner().invoke(app, ["serve", "exchange"])
    assert result.exit_code == 2, result.output
    assert "IMI_EXCHANGE_DATABASE_URL" in result.output
