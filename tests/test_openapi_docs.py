"""The OpenAPI documents a front-end team builds on (issue 7, item 4): every operation of every
service has a summary, documents the refusals it can answer with an example error body per code,
and every JSON request body has an example that the route accepts.

The codes documented are kept true: each is a code the code base raises (a literal status and code
passed to ``ApiError``, ``error_response`` or a refusal helper, collected from the source), and one
that the route's own code can reach (by the names it calls, transitively, within its service and
``shared``). The refusals every signed-in route, every route with input and every route that
needs a role can meet are checked on each of those routes.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from services import create_app, load_definition
from shared.auth import Requires, current_principal
from shared.errors import BAD_REQUEST, MALFORMED, REQUEST_TOO_LARGE, URI_TOO_LONG, ErrorBody
from shared.service import development_clock, health
from shared.settings import SERVICES, Environment, Settings

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# Refusals of the app as a whole (shared/limits.py, request validation): any route may answer them.
APP_WIDE = {(r.status, r.code) for r in (BAD_REQUEST, REQUEST_TOO_LARGE, URI_TOO_LONG, *MALFORMED)}


# -- what the code base raises -------------------------------------------------------------------


def _literal_refusal(call: ast.Call) -> tuple[int, str] | None:
    """``X(403, "forbidden", ...)`` (ApiError, error_response, a subclass, ``super().__init__``) or
    ``invalid("code", ...)`` (the 422 helpers of the exchange and registry); not ``Refusal(...)``,
    which documents a refusal."""
    args = call.args
    name = getattr(call.func, "id", getattr(call.func, "attr", ""))
    if name == "Refusal":  # a refusal documented, not raised
        return None
    if (
        len(args) >= 2
        and isinstance(args[0], ast.Constant)
        and type(args[0].value) is int
        and 400 <= args[0].value < 600
        and isinstance(args[1], ast.Constant)
        and isinstance(args[1].value, str)
        and CODE.match(args[1].value)
    ):
        return args[0].value, args[1].value
    if name == "invalid" and args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        return 422, args[0].value
    return None


class _Names:
    """Per function (by name): the refusals it raises itself and the names it calls or passes on.
    Names are not resolved to modules, so two functions of one name are one: an over-estimate of
    what a route reaches, never an under-estimate."""

    def __init__(self, paths: list[Path]) -> None:
        self.raises: dict[str, set[tuple[int, str]]] = defaultdict(set)
        self.calls: dict[str, set[str]] = defaultdict(set)
        for path in paths:
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    # Calling a class runs its methods (``__init__``, ``__call__``, ...).
                    methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
                    self.calls[node.name] |= methods
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if not isinstance(inner, ast.Call):
                        continue
                    self.calls[node.name].add(getattr(inner.func, "id", getattr(inner.func, "attr", "")))
                    for arg in inner.args:  # functions handed on, e.g. _transition(..., life.send)
                        if isinstance(arg, ast.Name | ast.Attribute):
                            self.calls[node.name].add(getattr(arg, "id", getattr(arg, "attr", "")))
                    if (refusal := _literal_refusal(inner)) is not None:
                        self.raises[node.name].add(refusal)

    def reachable(self, *names: str) -> set[tuple[int, str]]:
        seen: set[str] = set()
        pending = list(names)
        found: set[tuple[int, str]] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            found |= self.raises.get(name, set())
            pending.extend(self.calls.get(name, ()))
        return found


def _sources(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


@cache
def names_of(service: str) -> _Names:
    return _Names(_sources(f"services/{service}", "shared"))


def _http_exception_code(status: int) -> str:
    """The code the app gives a framework HTTPException (a body that is not UTF-8 is a 400)."""
    app = create_app("registry", Settings(environment=Environment.development))
    handler = app.exception_handlers[StarletteHTTPException]
    request = Request({"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""})

    async def answer() -> Response:
        outcome = handler(request, StarletteHTTPException(status))
        return await outcome if inspect.isawaitable(outcome) else outcome

    response = asyncio.run(answer())
    return str(json.loads(bytes(response.body))["error"]["code"])


@cache
def raised_codes() -> frozenset[tuple[int, str]]:
    everything = _Names(_sources("services", "shared"))
    found = {refusal for refusals in everything.raises.values() for refusal in refusals}
    found.add((400, _http_exception_code(400)))
    return frozenset(found)


# -- the documents and their routes ---------------------------------------------------------------


@cache
def document(service: str) -> dict[str, Any]:
    """As ``imi openapi`` writes it to docs/api."""
    return create_app(service, Settings(environment=Environment.development)).openapi()


def routes_of(service: str) -> Iterator[APIRoute]:
    routers: list[APIRouter] = [health, development_clock, *load_definition(service).routers]
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                yield route


def operations() -> Iterator[tuple[str, APIRoute]]:
    for service in SERVICES:
        for route in routes_of(service):
            yield service, route


def _id(value: Any) -> str:
    if isinstance(value, APIRoute):
        return f"{sorted(value.methods or ())[0]} {value.path}"
    return str(value)


OPERATIONS = list(operations())


def operation_of(service: str, route: APIRoute) -> dict[str, Any]:
    paths = document(service)["paths"]
    return paths[route.path_format][sorted(route.methods or ())[0].lower()]


def documented(operation: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """(status, code) -> the example body, for every 4xx the operation documents."""
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for status, response in operation["responses"].items():
        if not 400 <= int(status) < 500:
            continue
        for code, example in response.get("content", {}).get("application/json", {}).get("examples", {}).items():
            found[(int(status), code)] = example["value"]
    return found


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


def _call_name(call: Callable[..., Any]) -> str:
    return getattr(call, "__name__", type(call).__name__)


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "route"), OPERATIONS, ids=_id)
def test_every_operation_has_its_own_summary(service: str, route: APIRoute) -> None:
    assert route.summary, f"{service}: {_id(route)} has no summary= (FastAPI would make one of the function name)"
    assert operation_of(service, route)["summary"] == route.summary


@pytest.mark.parametrize(("service", "route"), OPERATIONS, ids=_id)
def test_every_operation_documents_its_refusals_with_an_example_per_code(service: str, route: APIRoute) -> None:
    operation = operation_of(service, route)
    examples = documented(operation)
    assert examples, f"{service}: {_id(route)} documents no 4xx with an example body"
    for status, response in operation["responses"].items():
        if 400 <= int(status) < 500:
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            assert response["content"]["application/json"].get("examples"), f"{status} without an example"
    for (status, code), body in examples.items():
        ErrorBody.model_validate(body)
        assert body["error"]["code"] == code, f"the example keyed {code} says {body['error']['code']}"
        assert f"`{code}`" in operation["responses"][str(status)]["description"]


@pytest.mark.parametrize(("service", "route"), OPERATIONS, ids=_id)
def test_every_documented_code_is_raised_by_the_code_base(service: str, route: APIRoute) -> None:
    unknown = set(documented(operation_of(service, route))) - raised_codes()
    assert not unknown, f"{service}: {_id(route)} documents codes nothing raises: {sorted(unknown)}"


@pytest.mark.parametrize(("service", "route"), OPERATIONS, ids=_id)
def test_every_documented_code_is_reachable_from_the_route(service: str, route: APIRoute) -> None:
    names = [route.endpoint.__name__, *(_call_name(call) for call in _dependency_calls(route.dependant))]
    reachable = names_of(service).reachable(*names)
    unreachable = set(documented(operation_of(service, route))) - reachable - APP_WIDE
    assert not unreachable, f"{service}: {_id(route)} documents codes its code cannot raise: {sorted(unreachable)}"


@pytest.mark.parametrize(("service", "route"), OPERATIONS, ids=_id)
def test_the_common_refusals_are_documented_where_they_can_happen(service: str, route: APIRoute) -> None:
    codes = set(documented(operation_of(service, route)))
    calls = list(_dependency_calls(route.dependant))
    # Any address may be too long or hold a NUL (shared/limits.py).
    assert {(414, "uri_too_long"), (422, "nul_character")} <= codes
    if current_principal in calls:
        assert {(401, "not_authenticated"), (401, "invalid_token")} <= codes, "a signed-in route"
    if any(isinstance(call, Requires) for call in calls):
        assert (403, "forbidden") in codes, "a route that needs a role"
    dependant = route.dependant
    if dependant.path_params or dependant.query_params or dependant.header_params or dependant.body_params:
        assert (422, "invalid_request") in codes, "a route with input"
    if service == "exchange" and "request_id" in {p.name for p in dependant.path_params}:
        # Every route on one request looks it up and checks who may see it.
        assert {(404, "not_found"), (403, "forbidden")} <= codes
        # A route that runs a lifecycle step refusing the request's state (lifecycle.wrong_state).
        names = names_of(service)
        if any("wrong_state" in names.calls.get(step, ()) for step in names.calls[route.endpoint.__name__]):
            assert (409, "transition_not_allowed") in codes, "a route that moves a request"


def _body_schema(service: str, operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    schema: dict[str, Any] = content["application/json"]["schema"]
    components = document(service)["components"]["schemas"]
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


JSON_BODIES = [
    (service, route) for service, route in OPERATIONS if _body_schema(service, operation_of(service, route)) is not None
]


def test_the_json_bodies_are_found() -> None:
    # Guards the test below against finding nothing: 19 registry, 11 exchange bodies and the clock.
    assert len(JSON_BODIES) >= 30


@pytest.mark.parametrize(("service", "route"), JSON_BODIES, ids=_id)
def test_every_json_request_body_has_an_example_the_route_accepts(service: str, route: APIRoute) -> None:
    schema = _body_schema(service, operation_of(service, route))
    assert schema is not None
    examples = schema.get("examples")
    assert examples, f"{service}: {_id(route)}: the request body has no example"
    # As a front-end team reads it: the published schema, its references resolved in the document.
    validator = jsonschema_rs.validator_for(
        {**schema, "components": document(service)["components"]}, validate_formats=True
    )
    # As the route reads it: the body's model.
    assert route.body_field is not None
    annotation = route.body_field.field_info.annotation
    assert annotation is not None
    model: TypeAdapter[Any] = TypeAdapter(annotation)
    for example in examples:
        errors = [error.message for error in validator.iter_errors(example)]
        assert not errors, f"{service}: {_id(route)}: example {example} does not match its schema: {errors}"
        model.validate_python(example)
