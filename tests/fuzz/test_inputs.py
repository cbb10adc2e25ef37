"""Hand-written hostile inputs for every service (ARCHITECTURE.md Invariant 4: no 500 for any
input; bad input gets a clear 4xx and changes nothing): NUL bytes in strings and paths, a 2 MB
body, malformed and deeply nested JSON, odd Unicode (right-to-left marks, combining characters,
lone surrogates escaped in JSON, emoji), wrong types, negative and huge page numbers, 300-character
query strings.

Invalid input must be answered 4xx with the error body ``{"error": {"code", "message"}}`` and leave
the service's outbox as it was (every change of state commits an event). Odd but valid input
(a right-to-left mark in a search, an emoji in a name) must never be a 5xx, and is kept as given.

Every input here that once got a 5xx, or a 2xx where a 4xx was due, was a bug this suite found;
each stays as a case so that it cannot come back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.fuzz.conftest import Running

PQ = "professional_qualifications"
TWO_MEGABYTES = 2 * 1024 * 1024
ODD = "\u200fAna\u202e Pop\u0301\u0308 😀👩🏽‍⚕️"  # RTL mark, RTL override, combining marks, emoji with ZWJ


def nested(depth: int, leaf: str = "1") -> str:
    text = leaf
    for _ in range(depth):
        text = '{"a":' + text + "}"
    return text


@dataclass(frozen=True)
class Hostile:
    """One request; ``{name}`` in the path is the id of something the seeding created."""

    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    params: dict[str, str] = field(default_factory=dict)
    valid: bool = False  # odd but valid: never a 5xx, may succeed

    def request(self, running: Running) -> dict[str, Any]:
        path = self.path.format(**{name: ids[0] for name, ids in running.target.ids.items()})
        headers = dict(running.headers)
        if self.body is not None:
            headers["content-type"] = self.content_type
        return {"method": self.method, "url": path, "content": self.body, "params": self.params, "headers": headers}


def body(value: str) -> bytes:
    """A JSON text as written (escapes such as \\u0000 and \\ud800 stay escapes)."""
    return value.encode()


def big_json() -> bytes:
    return json.dumps({"advance": "P1D", "padding": "x" * TWO_MEGABYTES}).encode()


COMMON = [  # every service has /_dev/clock (outside production) and a JSON body there
    ("two_megabyte_body", Hostile("POST", "/_dev/clock", big_json())),
    ("malformed_json", Hostile("POST", "/_dev/clock", body('{"advance": '))),
    ("trailing_garbage", Hostile("POST", "/_dev/clock", body('{"advance": "P1D"} garbage'))),
    ("deeply_nested_array", Hostile("POST", "/_dev/clock", body("[" * 100_000 + "]" * 100_000))),
    ("deeply_nested_object", Hostile("POST", "/_dev/clock", body(nested(5_000)))),
    ("not_utf8", Hostile("POST", "/_dev/clock", b'{"advance": "\xff\xfe"}')),
    ("lone_surrogate", Hostile("POST", "/_dev/clock", body('{"advance": "\\ud800"}'))),
    ("nul_in_string", Hostile("POST", "/_dev/clock", body('{"advance": "P1D\\u0000"}'))),
    ("odd_unicode_in_string", Hostile("POST", "/_dev/clock", body(json.dumps({"advance": "P1D" + ODD})))),
    ("wrong_type", Hostile("POST", "/_dev/clock", body('{"advance": 1}'))),
    ("array_for_object", Hostile("POST", "/_dev/clock", body('["P1D"]'))),
    ("null_body", Hostile("POST", "/_dev/clock", body("null"))),
    ("not_json", Hostile("POST", "/_dev/clock", b"advance=P1D", "application/x-www-form-urlencoded")),
    ("unknown_path_with_nul", Hostile("GET", "/%00/..%2f..%2fetc/passwd")),
]

SPECIFIC: dict[str, list[Any]] = {
    "registry": [
        ("nul_in_path", Hostile("GET", "/users/%00")),
        ("nul_in_path_string", Hostile("PUT", "/coordinators/{coordinator_id}/settings/%00", body("{}"))),
        ("nul_in_user_name", Hostile("POST", "/auth/login", body('{"username": "ana\\u0000", "password": "x"}'))),
        pytest.param(
            "nul_stored",
            Hostile("PATCH", "/users/{user_id}", body('{"name": "Ana\\u0000Pop"}')),
        ),
        pytest.param("nul_in_search", Hostile("GET", "/directory/authorities", params={"q": "\x00"})),
        ("lone_surrogate_stored", Hostile("PATCH", "/users/{user_id}", body('{"name": "\\ud800"}'))),
        ("lone_surrogate_login", Hostile("POST", "/auth/login", body('{"username": "\\udfff", "password": "x"}'))),
        ("odd_unicode_login", Hostile("POST", "/auth/login", body(json.dumps({"username": ODD, "password": ODD})))),
        ("odd_unicode_search", Hostile("GET", "/directory/authorities", params={"q": ODD}, valid=True)),
        ("invalid_utf8_in_query", Hostile("GET", "/directory/authorities?q=%ED%A0%80%FF", valid=True)),
        (
            "two_megabyte_body_login",
            Hostile("POST", "/auth/login", body(json.dumps({"username": "x" * TWO_MEGABYTES}))),
        ),
        ("deeply_nested_login", Hostile("POST", "/auth/login", body('{"username": ' + nested(3_000) + "}"))),
        ("wrong_types", Hostile("POST", "/auth/login", body('{"username": 123, "password": ["x"]}'))),
        ("wrong_type_in_list", Hostile("PUT", "/users/{user_id}/roles", body('{"roles": [1, null, "x"]}'))),
        ("negative_page", Hostile("GET", "/directory/authorities", params={"page": "-1"})),
        ("page_zero", Hostile("GET", "/directory/authorities", params={"page": "0"})),
        pytest.param(
            "huge_page",
            Hostile("GET", "/directory/authorities", params={"page": str(10**30)}),
        ),
        ("huge_page_size", Hostile("GET", "/directory/authorities", params={"page_size": str(10**30)})),
        ("non_numeric_page", Hostile("GET", "/directory/authorities", params={"page": "1e3"})),
        ("long_search", Hostile("GET", "/directory/authorities", params={"q": "a" * 300})),
        ("long_region", Hostile("GET", "/directory/authorities", params={"region": "r" * 300})),
        ("long_country", Hostile("GET", "/coordinators", params={"country": "R" * 300})),
        ("long_language", Hostile("GET", "/authorities/{authority_id}", params={"lang": "e" * 300})),
        ("huge_audit_limit", Hostile("GET", "/authorities/{authority_id}/audit", params={"limit": str(10**30)})),
        pytest.param(
            "null_for_a_required_column",
            Hostile("PATCH", "/users/{user_id}", body('{"phone": null}')),
        ),
    ],
    "exchange": [
        ("nul_in_path", Hostile("GET", "/requests/%00")),
        ("nul_in_attachment_path", Hostile("GET", "/requests/{request_id}/attachments/%00")),
        pytest.param(
            "nul_stored_in_comment",
            Hostile("POST", "/requests/{request_id}/comments", body('{"comment": "\\u0000"}')),
        ),
        pytest.param(
            "nul_stored_in_draft",
            Hostile("POST", "/requests", body(json.dumps({"area": PQ, "comment": "a\x00b"}))),
        ),
        pytest.param(
            "nul_in_filter",
            Hostile("GET", "/requests", params={"box": "sent", "area": "\x00"}),
        ),
        ("lone_surrogate_comment", Hostile("POST", "/requests/{request_id}/comments", body('{"comment": "\\udbff"}'))),
        (
            "lone_surrogate_subject",
            Hostile("POST", "/requests", body('{"area": "' + PQ + '", "subject": {"family_name": "\\ud800x"}}')),
        ),
        (
            "odd_unicode_comment",
            Hostile("POST", "/requests/{request_id}/comments", body(json.dumps({"comment": ODD})), valid=True),
        ),
        (
            "two_megabyte_answers",
            Hostile("PUT", "/requests/{request_id}/answers", body(json.dumps({"answers": {"a": "x" * TWO_MEGABYTES}}))),
        ),
        (
            "deeply_nested_answer",
            Hostile("PUT", "/requests/{request_id}/answers", body('{"answers": {"a": ' + nested(3_000) + "}}")),
        ),
        ("wrong_types", Hostile("POST", "/requests", body('{"area": 1, "question_ids": "x", "subject": []}'))),
        ("wrong_uuid", Hostile("POST", "/requests/{request_id}/allocate", body('{"user_id": "not-a-uuid"}'))),
        ("negative_page", Hostile("GET", "/requests", params={"box": "sent", "page": "-1"})),
        ("huge_page", Hostile("GET", "/requests", params={"box": "sent", "page": str(10**30)})),
        ("long_area", Hostile("GET", "/requests", params={"box": "sent", "area": "a" * 300})),
        ("long_box", Hostile("GET", "/requests", params={"box": "b" * 300})),
        ("long_language", Hostile("GET", "/question-sets", params={"lang": "e" * 300})),
        ("long_statistics_area", Hostile("GET", "/statistics", params={"group_by": "area", "area": "a" * 300})),
    ],
    "notifier": [
        ("nul_in_path", Hostile("GET", "/deliveries/%00")),
        ("nul_in_filter", Hostile("GET", "/deliveries", params={"status": "\x00"})),
        ("negative_id", Hostile("GET", "/deliveries/-1")),
        ("huge_id", Hostile("POST", f"/deliveries/{10**30}/resend")),
        ("huge_before", Hostile("GET", "/deliveries", params={"before": str(10**30)})),
        ("negative_limit", Hostile("GET", "/deliveries", params={"limit": "-1"})),
        ("long_status", Hostile("GET", "/deliveries", params={"status": "s" * 300})),
        ("odd_unicode_status", Hostile("GET", "/deliveries", params={"status": ODD})),
    ],
    "retention": [
        ("nul_in_path", Hostile("GET", "/retention/requests/%00")),
        ("nul_in_duration", Hostile("GET", "/retention/purges/upcoming", params={"within": "P1D\x00"})),
        ("odd_unicode_duration", Hostile("GET", "/retention/purges/upcoming", params={"within": "P1D" + ODD})),
        ("huge_duration", Hostile("GET", "/retention/purges/upcoming", params={"within": "P" + "9" * 30 + "D"})),
        ("negative_after", Hostile("GET", "/retention/log", params={"after": "-1"})),
        pytest.param(
            "huge_after",
            Hostile("GET", "/retention/log", params={"after": str(10**30)}),
        ),
        ("negative_limit", Hostile("GET", "/retention/purges/upcoming", params={"limit": "-1"})),
        ("long_duration", Hostile("GET", "/retention/purges/upcoming", params={"within": "P" * 300})),
        ("long_format", Hostile("GET", "/retention/report", params={"format": "f" * 300})),
    ],
}


def cases(service: str) -> list[Any]:
    collected = []
    for case in [*COMMON, *SPECIFIC[service]]:
        if hasattr(case, "marks"):  # a pytest.param: a known bug
            name, hostile = case.values
            marks: Any = case.marks
        else:
            name, hostile = case
            marks = ()
        collected.append(pytest.param(hostile, id=name, marks=marks))
    clock_overflow = Hostile("POST", "/_dev/clock", body('{"advance": "P9999999999999999999999D"}'))
    collected.append(pytest.param(clock_overflow, id="clock_overflow"))
    return collected


def assert_error_body(response: httpx.Response) -> None:
    payload = response.json()
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert isinstance(error["code"], str) and error["code"], payload
    assert isinstance(error["message"], str) and error["message"], payload
    assert set(error) <= {"code", "message", "field", "details"}, payload


async def refused_without_change(service: Running, hostile: Hostile) -> None:
    before = await service.outbox_size()
    response = await service.client.request(**hostile.request(service))
    assert response.status_code < 500, response.text[:500]
    if hostile.valid:
        return
    assert 400 <= response.status_code < 500, response.text[:500]
    assert_error_body(response)
    assert await service.outbox_size() == before, "a refused request changed the service's state"


# One test function per service, so that each service is built and seeded once for all its cases.


@pytest.mark.parametrize("service", ["registry"], indirect=True)
@pytest.mark.parametrize("hostile", cases("registry"))
async def test_registry_refuses_hostile_input(service: Running, hostile: Hostile) -> None:
    await refused_without_change(service, hostile)


@pytest.mark.parametrize("service", ["exchange"], indirect=True)
@pytest.mark.parametrize("hostile", cases("exchange"))
async def test_exchange_refuses_hostile_input(service: Running, hostile: Hostile) -> None:
    await refused_without_change(service, hostile)


@pytest.mark.parametrize("service", ["notifier"], indirect=True)
@pytest.mark.parametrize("hostile", cases("notifier"))
async def test_notifier_refuses_hostile_input(service: Running, hostile: Hostile) -> None:
    await refused_without_change(service, hostile)


@pytest.mark.parametrize("service", ["retention"], indirect=True)
@pytest.mark.parametrize("hostile", cases("retention"))
async def test_retention_refuses_hostile_input(service: Running, hostile: Hostile) -> None:
    await refused_without_change(service, hostile)


@pytest.mark.parametrize("service", ["registry"], indirect=True)
async def test_odd_but_valid_unicode_is_kept_as_given(service: Running) -> None:
    user = f"/users/{service.id('user_id')}"
    changed = await service.client.patch(user, json={"name": ODD}, headers=service.headers)
    assert changed.status_code == 200, changed.text
    assert (await service.client.get(user, headers=service.headers)).json()["name"] == ODD


# -- responses outside the documented schema (tests/fuzz/test_openapi.py, with_known_gaps) --------


def _has_offset(instant: str) -> bool:
    return instant.endswith("Z") or instant[-6] in "+-"


@pytest.mark.parametrize("service", ["registry"], indirect=True)
async def test_a_body_that_is_not_utf8_gets_a_documented_400(service: Running) -> None:
    headers = {**service.headers, "content-type": "application/json"}
    response = await service.client.post("/auth/login", content=b'{"username": "\xff"}', headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_request")
    assert "400" in service.target.app.openapi()["paths"]["/auth/login"]["post"]["responses"]


@pytest.mark.parametrize("service", ["exchange"], indirect=True)
async def test_attachment_refusals_are_documented(service: Running) -> None:
    responses = service.target.app.openapi()["paths"]["/requests/{request_id}/attachments"]["post"]["responses"]
    assert {"413", "415"} <= set(responses)


@pytest.mark.parametrize("service", ["exchange"], indirect=True)
async def test_the_exchange_answers_instants_with_their_offset(service: Running) -> None:
    response = await service.client.get(f"/requests/{service.id('request_id')}", headers=service.headers)
    assert response.status_code == 200, response.text
    assert _has_offset(response.json()["created_at"]), response.json()["created_at"]


@pytest.mark.parametrize("service", ["registry"], indirect=True)
async def test_the_registry_audit_trail_answers_instants_with_their_offset(service: Running) -> None:
    audit = f"/authorities/{service.id('authority_id')}/audit"
    response = await service.client.get(audit, headers=service.headers)
    assert response.status_code == 200, response.text
    assert all(_has_offset(entry["at"]) for entry in response.json()), response.json()
