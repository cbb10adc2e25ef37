"""Errors are values the API documents: every 4xx body is ``{"error": {"code", "message", "field"}}``.

Nothing reaches a client as a bare 500 traceback: validation problems become 422 with the offending
field, HTTP errors keep their status with a code, and an unexpected exception is logged with the
correlation id and answered with a generic ``internal_error``.
"""

from __future__ import annotations

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
