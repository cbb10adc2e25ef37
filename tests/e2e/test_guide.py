"""docs/guide.md, the front-end teams' walk through one request (issue 7), against the real routes:
every call it writes exists in its service's OpenAPI document (docs/api/, checked against the code
by `imi openapi --check`) with the body fields and query parameters it shows, and every call the
journey of services/journey.py makes (what `imi demo` runs) is written in it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"
CALL = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^\s`?]*)(?:\?([^\s`]*))?(?: (\{[^`]*\}))?`")
JOURNEY_CALL = re.compile(r'"(GET|POST|PUT|PATCH|DELETE)",\s*f"\{(?:self\.)?urls\.(\w+)\}(/[^"]*)"')


def template(path: str) -> str:
    """A path with every parameter written the same way: /requests/{request_id} and /requests/{id}
    (or the journey's /requests/{request_id} from an f-string) are one route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def top_level_fields(body: str) -> list[str]:
    """The field names of ``{a, b: {...}, c}``, nested braces and brackets skipped."""
    parts, depth, part = [], 0, ""
    for char in body.strip()[1:-1]:
        depth += (char in "{[") - (char in "}]")
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    return [name for name in (p.split(":")[0].strip() for p in parts) if name]


def matches(call: tuple[str, str], written: tuple[str, str]) -> bool:
    """Whether a call (its path may hold a value, /translations/en) is the one written."""
    (method, path), (written_method, written_path) = call, written
    segments, written_segments = path.split("/"), written_path.split("/")
    return (
        method == written_method
        and len(segments) == len(written_segments)
        and all(w == "{}" or w == s for s, w in zip(segments, written_segments, strict=True))
    )


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {
        service: json.loads((ROOT / "docs" / "api" / f"{service}.openapi.json").read_text()) for service in SERVICES
    }


def operation(documents: dict[str, dict[str, Any]], method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    for service, document in documents.items():
        for route, operations in document["paths"].items():
            if method.lower() in operations and matches((method, template(path)), (method, template(route))):
                return service, operations[method.lower()]
    return None


def request_fields(document: dict[str, Any], op: dict[str, Any]) -> set[str]:
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return set(schema.get("properties", {}))


def guide_calls() -> list[tuple[str, str, str | None, str | None]]:
    return CALL.findall(GUIDE.read_text())  # type: ignore[return-value]


def test_the_guide_writes_calls_at_all() -> None:
    # The patterns below find what they check: a guide rewritten in another notation fails here.
    assert len(guide_calls()) >= 40


@pytest.mark.parametrize("call", guide_calls(), ids=lambda c: f"{c[0]} {c[1]}")
def test_each_call_in_the_guide_is_a_real_route_with_those_fields(
    documents: dict[str, dict[str, Any]], call: tuple[str, str, str, str]
) -> None:
    method, path, query, body = call
    found = operation(documents, method, path)
    assert found is not None, f"{method} {path}: no such route in docs/api"
    service, op = found
    if body:
        fields = set(top_level_fields(body))
        known = request_fields(documents[service], op)
        assert known, f"{method} {path} takes no JSON body, the guide shows {body}"
        assert fields <= known, f"{method} {path}: {sorted(fields - known)} not in the body ({sorted(known)})"
    if query:
        names = {pair.split("=")[0] for pair in query.split("&")}
        parameters = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert names <= parameters, f"{method} {path}: {sorted(names - parameters)} not among {sorted(parameters)}"


def test_every_call_the_journey_makes_is_in_the_guide(documents: dict[str, dict[str, Any]]) -> None:
    journey = (ROOT / "services" / "journey.py").read_text()
    made = {(method, template(path)) for method, _service, path in JOURNEY_CALL.findall(journey)}
    assert len(made) >= 25  # the pattern still finds the journey's calls
    written = {(method, template(path)) for method, path, _query, _body in guide_calls()}
    missing = [call for call in made if not any(matches(call, line) for line in written)]
    assert sorted(missing) == []
    for method, path in made:
        assert operation(documents, method, path) is not None, f"the journey calls {method} {path}, no route"


def test_the_field_parser_reads_nested_bodies() -> None:
    assert top_level_fields("{a, b: {c, d}, e: [1, 2], f}") == ["a", "b", "e", "f"]
    assert top_level_fields("{answers}") == ["answers"]
    assert matches(("PUT", "/authorities/{}/translations/en"), ("PUT", "/authorities/{}/translations/{}"))
    assert not matches(("PUT", "/authorities/{}/translations/en"), ("PUT", "/authorities/{}/official-name"))
