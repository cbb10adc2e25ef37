"""What every retention route shares: who may call it and the errors it documents."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from shared.auth import Requires
from shared.errors import MALFORMED, SIGNED_IN, Refusal, error_responses

# The Commission hosts the system and runs ops (rule A3); data-protection officers act for it.
COMMISSION_ONLY = [Depends(Requires("commission"))]

ERRORS: dict[int | str, dict[str, Any]] = error_responses(
    SIGNED_IN, Refusal(403, "forbidden", "this action needs the role commission"), MALFORMED
)
