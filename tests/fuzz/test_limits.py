"""Every limit gives a clear error (ARCHITECTURE.md Invariant 4), on every service where it applies:
the request body (shared/limits.py: 413 ``request_too_large``), attachments (the exchange: 413
``attachment_too_large``, 415 ``attachment_type_not_allowed``), page sizes (422 on 0 and one past the
largest, on every paginated endpoint), the directory's query text (422 past 200 characters) and the
address (414 ``uri_too_long`` past 8192 characters). And just within each limit, no refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.limits import MAX_JSON_BODY, MAX_URL
from tests.fuzz.conftest import Running

SERVICES = ["registry", "exchange", "notifier", "retention"]
JSON = {"content-type": "application/json"}
ATTACHMENT_LIMIT = 64 * 1024
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    assert response.json()["error"]["message"]
    return code


def clock_body(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes for ``POST /_dev/clock`` (padding is ignored)."""
    head, tail = b'{"advance": "P1D", "padding": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- request body --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES, indirect=True)
async def test_a_json_body_over_one_mebibyte_is_refused_whole_before_any_route(service: Running) -> None:
    headers = {**service.headers, **JSON}
    before = await service.outbox_size()
    declared = await service.client.post("/_dev/clock", content=clock_body(MAX_JSON_BODY + 1), headers=headers)
    assert (declared.status_code, error_code(declared)) == (413, "request_too_large")
    assert str(MAX_JSON_BODY) in declared.json()["error"]["message"]
    # Without a Content-Length (chunked), the body is counted as it arrives.
    streamed = await service.client.post("/_dev/clock", content=chunks(clock_body(2 * MAX_JSON_BODY)), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert (streamed.status_code, error_code(streamed)) == (413, "request_too_large")
    assert await service.outbox_size() == before
    # Exactly at the limit, the body reaches the route (whose frozen clock cannot travel).
    at_limit = await service.client.post("/_dev/clock", content=clock_body(MAX_JSON_BODY), headers=headers)
    assert (at_limit.status_code, error_code(at_limit)) == (409, "clock_fixed")


@pytest.mark.parametrize("service", SERVICES, indirect=True)
async def test_an_address_over_8192_characters_is_refused(service: Running) -> None:
    path = "/health/live"
    too_long = await service.client.get(path, params={"q": "a" * (MAX_URL - len(path) - len("q=") + 1)})
    assert (too_long.status_code, error_code(too_long)) == (414, "uri_too_long")
    long_path = await service.client.get("/" + "p" * MAX_URL, headers=service.headers)
    assert (long_path.status_code, error_code(long_path)) == (414, "uri_too_long")
    within = await service.client.get(path, params={"q": "a" * (MAX_URL - len(path) - len("q="))})
    assert within.status_code == 200


# -- attachments (the exchange) ------------------------------------------------------------------

EXCHANGE_WITH_SMALL_ATTACHMENTS = ("exchange", {"attachment_max_bytes": ATTACHMENT_LIMIT})


async def upload(service: Running, content: bytes, content_type: str, name: str = "diploma.pdf") -> httpx.Response:
    return await service.client.post(
        f"/requests/{service.id('request_id')}/attachments",
        files={"file": (name, content, content_type)},
        headers=service.headers,
    )


@pytest.mark.parametrize("service", [EXCHANGE_WITH_SMALL_ATTACHMENTS], indirect=True)
async def test_attachments_are_limited_in_size(service: Running) -> None:
    at_limit = await upload(service, PDF + b"0" * (ATTACHMENT_LIMIT - len(PDF)), "application/pdf")
    assert at_limit.status_code == 201, at_limit.text
    over = await upload(service, PDF + b"0" * (ATTACHMENT_LIMIT + 1 - len(PDF)), "application/pdf")
    assert (over.status_code, error_code(over)) == (413, "attachment_too_large")
    assert over.json()["error"]["field"] == "file"
    # Far over it, the upload is refused before the route reads it (the file and 64 KiB of form).
    far_over = await upload(service, PDF + b"0" * (ATTACHMENT_LIMIT + 65 * 1024), "application/pdf")
    assert (far_over.status_code, error_code(far_over)) == (413, "request_too_large")
    empty = await upload(service, b"", "application/pdf")
    assert (empty.status_code, error_code(empty)) == (422, "attachment_empty")


@pytest.mark.parametrize("service", [EXCHANGE_WITH_SMALL_ATTACHMENTS], indirect=True)
@pytest.mark.parametrize(
    ("content", "declared", "name"),
    [
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 64, "application/pdf", "diploma.pdf"),  # a program called a PDF
        (b"#!/bin/sh\nrm -rf /\n", "text/x-shellscript", "run.sh"),
        (b"<html><script>alert(1)</script></html>", "text/html", "page.html"),
        (b"plain words, no magic", "application/pdf", "diploma.pdf"),
    ],
    ids=["program_called_pdf", "shell_script", "html", "unknown_content"],
)
async def test_attachments_are_limited_in_type(service: Running, content: bytes, declared: str, name: str) -> None:
    refused = await upload(service, content, declared, name)
    assert (refused.status_code, error_code(refused)) == (415, "attachment_type_not_allowed")
    assert "application/pdf" in refused.json()["error"]["message"]


# -- page sizes ----------------------------------------------------------------------------------

# (service, path, fixed query, size parameter, largest size) for every paginated endpoint.
PAGINATED: list[tuple[str, str, dict[str, str], str, int]] = [
    ("registry", "/directory/authorities", {}, "page_size", 100),
    ("registry", "/authorities/{authority_id}/audit", {}, "limit", 500),
    ("exchange", "/requests", {"box": "sent"}, "page_size", 100),
    ("exchange", "/requests", {"box": "received"}, "page_size", 100),
    ("exchange", "/actions", {}, "page_size", 100),
    ("notifier", "/deliveries", {}, "limit", 500),
    ("retention", "/retention/log", {}, "limit", 5000),
    ("retention", "/retention/purges/upcoming", {}, "limit", 1000),
]


def paginated(service: str) -> list[Any]:
    return [
        pytest.param(path, query, parameter, largest, id=f"{path}?{parameter}")
        for name, path, query, parameter, largest in PAGINATED
        if name == service
    ]


async def assert_page_sizes_are_bounded(
    service: Running, path: str, query: dict[str, str], parameter: str, largest: int
) -> None:
    url = path.format(**{name: ids[0] for name, ids in service.target.ids.items()})
    for size in (0, largest + 1, -1):
        refused = await service.client.get(url, params={**query, parameter: str(size)}, headers=service.headers)
        assert (refused.status_code, error_code(refused)) == (422, "invalid_request"), refused.text
        assert refused.json()["error"]["field"] == f"query.{parameter}"
    for size in (1, largest):
        accepted = await service.client.get(url, params={**query, parameter: str(size)}, headers=service.headers)
        assert accepted.status_code == 200, accepted.text


@pytest.mark.parametrize("service", ["registry"], indirect=True)
@pytest.mark.parametrize(("path", "query", "parameter", "largest"), paginated("registry"))
async def test_registry_page_sizes(service: Running, path: str, query: dict[str, str], parameter: str, largest: int):
    await assert_page_sizes_are_bounded(service, path, query, parameter, largest)


@pytest.mark.parametrize("service", ["exchange"], indirect=True)
@pytest.mark.parametrize(("path", "query", "parameter", "largest"), paginated("exchange"))
async def test_exchange_page_sizes(service: Running, path: str, query: dict[str, str], parameter: str, largest: int):
    await assert_page_sizes_are_bounded(service, path, query, parameter, largest)


@pytest.mark.parametrize("service", ["notifier"], indirect=True)
@pytest.mark.parametrize(("path", "query", "parameter", "largest"), paginated("notifier"))
async def test_notifier_page_sizes(service: Running, path: str, query: dict[str, str], parameter: str, largest: int):
    await assert_page_sizes_are_bounded(service, path, query, parameter, largest)


@pytest.mark.parametrize("service", ["retention"], indirect=True)
@pytest.mark.parametrize(("path", "query", "parameter", "largest"), paginated("retention"))
async def test_retention_page_sizes(service: Running, path: str, query: dict[str, str], parameter: str, largest: int):
    await assert_page_sizes_are_bounded(service, path, query, parameter, largest)


def test_every_paginated_endpoint_is_listed() -> None:
    """A new page-size or limit parameter joins PAGINATED (and so these tests)."""
    import tempfile
    from pathlib import Path

    from services import create_app
    from tests.fuzz.targets import settings_for

    found = set()
    for service in SERVICES:
        with tempfile.TemporaryDirectory() as data_dir:
            document = create_app(service, settings_for(Path(data_dir))).openapi()
        for path, operations in document["paths"].items():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "query" and parameter["name"] in ("page_size", "limit"):
                        found.add((service, path, parameter["name"]))
    assert found == {(service, path, parameter) for service, path, _, parameter, _ in PAGINATED}


# -- the directory's query text ------------------------------------------------------------------


@pytest.mark.parametrize("service", ["registry"], indirect=True)
async def test_the_directory_search_text_is_limited_to_200_characters(service: Running) -> None:
    refused = await service.client.get("/directory/authorities", params={"q": "a" * 201}, headers=service.headers)
    assert (refused.status_code, error_code(refused)) == (422, "invalid_request")
    assert refused.json()["error"]["field"] == "query.q"
    accepted = await service.client.get("/directory/authorities", params={"q": "a" * 200}, headers=service.headers)
    assert accepted.status_code == 200, accepted.text
