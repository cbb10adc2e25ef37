"""Every operation of every service's OpenAPI document, fuzzed by schemathesis in process (ASGI),
authenticated as a user with broad roles so that routes are reached beyond 401.

Per operation: the schema's examples, its boundary values (coverage phase) and a bounded number of
generated cases, valid and invalid, each answered without a 5xx, with a documented status code and
content type, a body that matches the documented schema, invalid input refused with a 4xx, and
every 4xx carrying the error body ``{"error": {"code", "message"}}`` (shared/errors.py).

The documents are the services' own (``app.openapi()``), read when this module is collected; the
services are built, seeded and started once per module by the ``seeded_target`` fixture. The runs
are deterministic (a fixed seed, derandomized Hypothesis, no example database) and bounded
(``IMI_FUZZ_EXAMPLES`` generated cases per operation, 25 by default) so the whole file takes a
couple of minutes on two cores.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services import create_app
from tests.fuzz.targets import SEEDED_IDS, Target, settings_for

FUZZ_EXAMPLES = int(os.environ.get("IMI_FUZZ_EXAMPLES", "25"))
SEED = 20260302


def error_body_on_refusals(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every refusal says what is wrong in the platform's one error shape (shared/errors.py)."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        raise AssertionError(f"{response.status_code} without the error body: {response.text[:300]!r}")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def load_schema(service: str) -> Any:
    """The service's OpenAPI document as it serves it, loaded for schemathesis."""
    with tempfile.TemporaryDirectory() as data_dir:
        document = create_app(service, settings_for(Path(data_dir))).openapi()
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config(seed=SEED))
    schema.config.generation.update(
        max_examples=FUZZ_EXAMPLES, deterministic=True, with_security_parameters=False, allow_extra_parameters=False
    )
    return schema


FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def call_and_validate(case: Case, target: Target) -> None:
    case.call_and_validate(
        app=target.started_once,
        headers=target.headers,
        checks=CHECKS,
        additional_checks=[error_body_on_refusals],
    )


registry_schema = load_schema("registry")
exchange_schema = load_schema("exchange")
notifier_schema = load_schema("notifier")
retention_schema = load_schema("retention")


def _existing(service: str, name: str, value: Any) -> Any:
    """Half of the well-formed ids generated for path parameter ``name`` (a deterministic half)
    replaced by ids of things the seeding created, so the fuzzed calls reach past "not found"."""
    known = SEEDED_IDS.get(service, {}).get(name)
    if not known:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        well_formed = True
    elif isinstance(value, str):
        try:
            well_formed = str(uuid.UUID(value)) == value.lower()
        except ValueError:
            well_formed = False
    else:
        well_formed = False
    if not well_formed:
        return value
    pick = zlib.crc32(str(value).encode())
    return value if pick % 2 else type(value)(known[(pick // 2) % len(known)])


def _naming_existing_things(service: str) -> Any:
    def map_path_parameters(context: Any, path_parameters: Any) -> Any:
        if not isinstance(path_parameters, dict):
            return path_parameters
        return {name: _existing(service, name, value) for name, value in path_parameters.items()}

    return map_path_parameters


for _service, _schema in (
    ("registry", registry_schema),
    ("exchange", exchange_schema),
    ("notifier", notifier_schema),
    ("retention", retention_schema),
):
    _schema.hook("map_path_parameters")(_naming_existing_things(_service))


@pytest.mark.parametrize("seeded_target", ["registry"], indirect=True)
@FUZZ_SETTINGS
@registry_schema.parametrize()
def test_registry(case: Case, seeded_target: Target) -> None:
    call_and_validate(case, seeded_target)


@pytest.mark.parametrize("seeded_target", ["exchange"], indirect=True)
@FUZZ_SETTINGS
@exchange_schema.parametrize()
def test_exchange(case: Case, seeded_target: Target) -> None:
    call_and_validate(case, seeded_target)


@pytest.mark.parametrize("seeded_target", ["notifier"], indirect=True)
@FUZZ_SETTINGS
@notifier_schema.parametrize()
def test_notifier(case: Case, seeded_target: Target) -> None:
    call_and_validate(case, seeded_target)


@pytest.mark.parametrize("seeded_target", ["retention"], indirect=True)
@FUZZ_SETTINGS
@retention_schema.parametrize()
def test_retention(case: Case, seeded_target: Target) -> None:
    call_and_validate(case, seeded_target)


# -- stateful: sequences of calls along the links schemathesis infers between operations (none
# between the retention service's, which only reads) ------------------------------------------------

STATEFUL_SETTINGS = settings(
    max_examples=int(os.environ.get("IMI_FUZZ_SCENARIOS", "15")),
    stateful_step_count=8,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def run_stateful(schema: Any, target: Target) -> None:
    """Scenarios that feed what one response gave (ids, references) into the next calls, with the
    same checks as above on every step."""

    class Scenarios(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"app": target.started_once, "headers": target.headers}

        def validate_response(self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(
                response, checks=CHECKS, additional_checks=[error_body_on_refusals], transport_kwargs=kwargs
            )

    Scenarios.run(settings=STATEFUL_SETTINGS)


@pytest.mark.parametrize("seeded_target", ["registry"], indirect=True)
def test_registry_stateful(seeded_target: Target) -> None:
    run_stateful(registry_schema, seeded_target)


@pytest.mark.parametrize("seeded_target", ["exchange"], indirect=True)
def test_exchange_stateful(seeded_target: Target) -> None:
    run_stateful(exchange_schema, seeded_target)


@pytest.mark.parametrize("seeded_target", ["notifier"], indirect=True)
def test_notifier_stateful(seeded_target: Target) -> None:
    run_stateful(notifier_schema, seeded_target)
