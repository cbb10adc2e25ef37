"""How `imi serve` has uvicorn serve a service (services/launcher.py)."""

from __future__ import annotations

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.launcher import server_config
from shared.settings import Settings


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
