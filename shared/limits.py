"""Limits on what a request may carry, checked before any route runs (ARCHITECTURE.md Invariant 4:
bad input gets a clear 4xx). JSON bodies are small; only multipart uploads may carry an attachment."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import error_response

MAX_JSON_BODY = 1024 * 1024
MAX_URL = 8192


def _has_nul(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"%00" in query.lower() or b"\x00" in query


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
    return not content_type.startswith(b"multipart/form-data")


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp, *, max_upload: int) -> None:
        self.app = app
        self.max_upload = max_upload

    def _limit(self, scope: Scope) -> int:
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if content_type.startswith(b"multipart/form-data"):
            return self.max_upload + 64 * 1024  # the file plus its form fields and boundaries
        return MAX_JSON_BODY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_length = len(scope.get("path", "")) + len(scope.get("query_string", b""))
        if url_length > MAX_URL:
            await error_response(414, "uri_too_long", f"the address is limited to {MAX_URL} characters")(
                scope, receive, send
            )
            return
        if _has_nul(scope):
            await error_response(422, "nul_character", "a NUL character is not allowed in the address")(
                scope, receive, send
            )
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        # Read the body before any route does, so an oversized one is refused here, whole.
        chunks: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if _is_json(scope) and (b"\\u0000" in body or b"\x00" in body):
            # Text never holds NUL: PostgreSQL refuses it, and nothing legitimate needs it.
            await error_response(422, "nul_character", "a NUL character is not allowed in the body")(
                scope, receive, send
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(413, "request_too_large", f"the request body is limited to {limit} bytes")
        await response(scope, receive, send)
