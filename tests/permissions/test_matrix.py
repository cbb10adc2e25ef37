"""Every route of every service, called by every actor of the matrix (tests/permissions/matrix.py):
the status is the one the matrix says, a refusal changes nothing the allowed call needs, and the
request's personal data appear only in the answers the matrix marks (rules P3, P4)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services import create_app
from shared.settings import Settings
from tests.permissions.matrix import KNOWN_BUGS, ROWS, SERVICES, Actor, Case, Outcome, Row, cases
from tests.permissions.render import COMMAND, DOCUMENT, render
from tests.permissions.world import MARKERS, TARGETS, PermissionWorld, permission_world

CASES = cases()
STATUS = {Outcome.forbidden: 403, Outcome.hidden: 404, Outcome.unauthenticated: 401}
CODES = {Outcome.forbidden: "forbidden", Outcome.hidden: "not_found", Outcome.unauthenticated: "not_authenticated"}


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PermissionWorld]:
    from argon2 import PasswordHasher

    from services.registry import security

    # argon2id at the production cost takes a quarter of a second a password; the world has dozens.
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", cheap)
        patch.setattr(security, "_DUMMY_HASH", cheap.hash("dummy-password"))
        async with permission_world(tmp_path_factory.mktemp("permissions")) as built:
            yield built


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_matrix_has_one_row_for_each_route_of_each_service(service: str, tmp_path) -> None:
    app = create_app(service, Settings(data_dir=tmp_path))
    declared = _routes(app) | {
        (method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
    }
    rows = {(row.method, row.path) for row in SERVICES[service]}
    assert sorted(declared - rows) == [], "routes without a row in tests/permissions/matrix.py"
    assert sorted(rows - declared) == [], "rows of routes the service no longer has"


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every API route of ``app``, hidden ones included (FastAPI resolves included routers lazily)."""
    found = set()
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            contexts = contexts()
        for each in contexts if contexts is not None else [route]:
            if isinstance(getattr(each, "original_route", each), APIRoute):
                found |= {(method, each.path) for method in each.methods if method != "HEAD"}
    return found


def test_every_row_names_a_target_the_world_builds_and_every_actor() -> None:
    for row in ROWS:
        assert row.target in TARGETS, row.id
        assert set(row.outcomes) == {case.actor for case in CASES if case.row is row}, row.id
        assert row.personal <= {a for a, o in row.outcomes.items() if o in (Outcome.allowed, Outcome.public)}, row.id


def _marked(case: Case) -> object:
    bug = KNOWN_BUGS.get((case.row.id, case.actor))
    return pytest.param(case, id=case.id, marks=[pytest.mark.xfail(reason=bug, strict=True)] if bug else [])


def test_every_known_bug_names_a_case() -> None:
    assert set(KNOWN_BUGS) <= {(case.row.id, case.actor) for case in CASES}


@pytest.mark.parametrize("case", [_marked(case) for case in CASES])
async def test_each_actor_gets_what_the_matrix_says(world: PermissionWorld, case: Case) -> None:
    row = case.row
    succeeds = case.outcome in (Outcome.allowed, Outcome.public)
    call = await world.target(row, fresh=succeeds and not row.repeatable)
    before = None if succeeds else await world.footprint(row.service)
    response = await world.call(row.service, row.method, call, case.actor)
    expected = row.status if succeeds else STATUS[case.outcome]
    assert response.status_code == expected, f"{case.id}: {response.status_code} {response.text[:400]}"
    if not succeeds:
        assert response.json()["error"]["code"] == CODES[case.outcome], response.text
        assert await world.footprint(row.service) == before, f"{case.id}: the refused call changed something"
    body = response.content.decode("utf-8", errors="replace")
    if case.actor in row.personal:
        assert all(marker in body for marker in _expected_markers(row.path)), f"{case.id}: personal data missing"
    else:
        leaked = [marker for marker in MARKERS if marker in body]
        assert leaked == [], f"{case.id}: personal data {leaked} in the answer"


def _expected_markers(path: str) -> tuple[str, ...]:
    from tests.permissions.world import ATTACHMENT_TEXT, FAMILY_NAME

    return (ATTACHMENT_TEXT,) if path.endswith("{attachment_id}") else (FAMILY_NAME,)


@pytest.mark.parametrize(
    "row", [row for row in ROWS if row.outcomes[Actor.anonymous] is not Outcome.public], ids=lambda row: row.id
)
async def test_a_forged_token_is_refused_on_every_route_that_asks_for_one(world: PermissionWorld, row: Row) -> None:
    call = await world.target(row, fresh=False)
    response = await world.call(row.service, row.method, call, "forged")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"


def test_docs_permissions_md_is_generated_from_this_matrix() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(), f"docs/permissions.md is stale: run `{COMMAND}`"
