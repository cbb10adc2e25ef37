"""Errors are values the API documents: every 4xx body is ``{"error": {"code", "message", "field"}}``.

Nothing reaches a client as a bare 500 traceback: validation problems become 422 with the offending
field, HTTP errors keep their status with a code, and an unexpected exception is logged with the
correlation id and answered with a generic ``internal_error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """A refusal the caller can act on: an HTTP status, a stable code, a message and the field."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_response(status: int, code: str, message: str, *, field: str | None = None, **extra: Any) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, field=field, details=extra.get("details"))
    return JSONResponse(
        status_code=status,
        content=ErrorBody(error=detail).model_dump(exclude_none=True),
        headers=extra.get("headers"),
    )


def _field_of(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Inputs are not echoed back: they may hold personal data, and they may not be JSON at all.
        details = [
            {"field": _field_of(e.get("loc", ())), "type": e.get("type"), "message": e.get("msg")} for e in exc.errors()
        ]
        first = details[0] if details else {"field": None, "message": "invalid request"}
        return error_response(
            422, "invalid_request", str(first["message"]), field=first["field"] or None, details=details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


# -- documentation: the refusals a route declares in its OpenAPI ``responses`` -------------------


@dataclass(frozen=True)
class Refusal:
    """One refusal a route documents: its status, its stable code and an example of the body.

    ``message`` and ``field`` are what the error body says in a typical case; ``headers`` are
    response headers sent with it (``Retry-After``, say), as OpenAPI header objects."""

    status: int
    code: str
    message: str
    field: str | None = None
    details: tuple[dict[str, Any], ...] | None = None
    headers: dict[str, dict[str, Any]] = dataclass_field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        detail = ErrorDetail(
            code=self.code,
            message=self.message,
            field=self.field,
            details=list(self.details) if self.details is not None else None,
        )
        return ErrorBody(error=detail).model_dump(exclude_none=True)


Refusals = Refusal | Iterable["Refusals"]


def _flatten(refusals: Iterable[Refusals]) -> Iterator[Refusal]:
    for refusal in refusals:
        if isinstance(refusal, Refusal):
            yield refusal
        else:
            yield from _flatten(refusal)


def error_responses(*refusals: Refusals) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: per status, the :class:`ErrorBody` schema, a description naming
    each code, and one example body per code (OpenAPI ``examples``, keyed by the code).

    Groups (tuples of refusals) may be passed as they are; a code given twice is documented once.
    A status declared here replaces the same status declared by the router or the app, so a route
    lists every refusal of each status it declares."""
    by_status: dict[int, dict[str, Refusal]] = {}
    for refusal in _flatten(refusals):
        by_status.setdefault(refusal.status, {}).setdefault(refusal.code, refusal)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        codes = by_status[status]
        headers: dict[str, dict[str, Any]] = {}
        for refusal in codes.values():
            headers.update(refusal.headers)
        entry: dict[str, Any] = {
            "model": ErrorBody,
            "description": "\n".join(f"- `{code}`: {refusal.message}" for code, refusal in codes.items()),
            "content": {
                "application/json": {
                    "examples": {
                        code: {"summary": refusal.message, "value": refusal.body()} for code, refusal in codes.items()
                    }
                }
            },
        }
        if headers:
            entry["headers"] = headers
        responses[status] = entry
    return responses


# Refusals every service shares: the access token (shared/auth.py), request validation (above) and
# the request limits (shared/limits.py).
NOT_AUTHENTICATED = Refusal(401, "not_authenticated", "an access token is required")
INVALID_TOKEN = Refusal(401, "invalid_token", "the access token was refused: the token has expired")
SIGNED_IN = (NOT_AUTHENTICATED, INVALID_TOKEN)
INVALID_REQUEST = Refusal(
    422,
    "invalid_request",
    "Field required",
    field="body.email",
    details=({"field": "body.email", "type": "missing", "message": "Field required"},),
)
NUL_CHARACTER = Refusal(422, "nul_character", "a NUL character is not allowed in the address")
MALFORMED = (INVALID_REQUEST, NUL_CHARACTER)
BAD_REQUEST = Refusal(400, "bad_request", "There was an error parsing the body")
REQUEST_TOO_LARGE = Refusal(413, "request_too_large", "the request body is limited to 10485760 bytes")
URI_TOO_LONG = Refusal(414, "uri_too_long", "the address is limited to 8192 characters")
