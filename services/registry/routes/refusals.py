"""The registry's refusals as its OpenAPI documents them: each route lists the codes it really
raises (:mod:`services.registry.access`, :mod:`services.registry.validation`, the modules of
authorities, users and login), each with an example error body. tests/test_openapi_docs.py checks
that every code listed is one the code base raises."""

from __future__ import annotations

from typing import Any

from services.registry.rate_limits import ACCOUNT_LIMIT, ADDRESS_LIMIT
from shared.errors import MALFORMED, SIGNED_IN, Refusal, Refusals, error_responses

# -- access (services.registry.access) ----------------------------------------------------------
FORBIDDEN = Refusal(403, "forbidden", "only a local data administrator of this authority changes its data")
AUTHORITY_NOT_FOUND = Refusal(404, "not_found", "no such authority", field="authority_id")
USER_NOT_FOUND = Refusal(404, "not_found", "no such user", field="user_id")

# -- reference data (services.registry.validation) ----------------------------------------------
UNKNOWN_COUNTRY = Refusal(422, "unknown_country", "'UK' is not an EEA country", field="country")
UNKNOWN_LANGUAGE = Refusal(422, "unknown_language", "'xx' is not one of the 26 languages", field="language")
UNKNOWN_AREA = Refusal(422, "unknown_legislative_area", "'medicine' is not a legislative area", field="area")
UNKNOWN_KEYWORD = Refusal(
    422, "unknown_keyword", "'Z9' is not on the economic_activity list", field="keywords.economic_activities"
)
KEYWORD_NOT_IN_AREA = Refusal(
    422,
    "keyword_not_in_area",
    "'pharmacist' is not a keyword of 'services'",
    field="keywords.areas.services",
)
AREA_NOT_GRANTED = Refusal(
    422, "area_not_granted", "the authority does not work in 'services'", field="keywords.areas.services"
)
KEYWORDS = (UNKNOWN_AREA, UNKNOWN_KEYWORD, KEYWORD_NOT_IN_AREA, AREA_NOT_GRANTED)

# -- login (services.registry.login, services.registry.rate_limits) -----------------------------
INVALID_CREDENTIALS = Refusal(401, "invalid_credentials", "the user name or the password is wrong")
ACCOUNT_LOCKED = Refusal(
    403,
    "account_locked",
    "this account is locked after five failed attempts; ask a local data administrator to reset the password",
)
TOO_MANY_ATTEMPTS = Refusal(
    429,
    "too_many_attempts",
    "too many login attempts; try again in 42 seconds",
    headers={
        "Retry-After": {
            "description": (
                f"seconds to wait: more than {ACCOUNT_LIMIT.attempts} refused attempts a minute on one account, "
                f"or {ADDRESS_LIMIT.attempts} from one address (whether or not the account exists)"
            ),
            "schema": {"type": "integer", "minimum": 1},
        }
    },
)

# -- registration of authorities and users (services.registry.authorities, .users) --------------
EMAIL_IN_USE = Refusal(409, "email_in_use", "another user already has this e-mail address", field="email")
REGISTRATION = (
    UNKNOWN_COUNTRY,
    UNKNOWN_LANGUAGE,
    Refusal(422, "region_required", "a regional or local authority names its region", field="region"),
    Refusal(
        422,
        "coordinator_scope",
        "a delegated coordinator covers one legislative area or one region",
        field="coordinator_area",
    ),
    *KEYWORDS,
    Refusal(409, "national_coordinator_exists", "a country has one national coordinator (rule A2)"),
    EMAIL_IN_USE,
)
ROLE_GRANTS = (
    UNKNOWN_AREA,
    Refusal(422, "role_needs_area", "allocator is given per legislative area", field="roles"),
    Refusal(422, "area_not_granted", "the authority does not work in 'services'", field="roles"),
    Refusal(422, "role_has_no_area", "local_data_administrator is authority-wide", field="roles"),
    Refusal(422, "role_not_allowed", "only coordinators have data administrators (rule S13)", field="roles"),
)
ALLOCATION_NEEDS_ALLOCATOR = Refusal(
    409,
    "allocation_needs_allocator",
    "allocation is on: 'professional_qualifications' would be left without an allocator",
)


def signed_in(*refusals: Refusals) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route for signed-in users: the token refusals, the given ones and
    invalid input (which replaces the app's own 422 entry, so it is listed again here)."""
    return error_responses(SIGNED_IN, refusals, MALFORMED)


def anonymous(*refusals: Refusals) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that needs no access token."""
    return error_responses(refusals, MALFORMED)
