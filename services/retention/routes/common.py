"""What every retention route shares: who may call it and the errors it documents."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from shared.auth import Requires
from shared.errors import ErrorBody

# The Commission hosts the system and runs ops (rule A3); data-protection officers act for it.
COMMISSION_ONLY = [Depends(Requires("commission"))]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No valid access token (not_authenticated, invalid_token)"},
    403: {"model": ErrorBody, "description": "The caller lacks the authority role commission (forbidden)"},
    422: {"model": ErrorBody, "description": "Invalid input: the error names the field (invalid_request, …)"},
}
