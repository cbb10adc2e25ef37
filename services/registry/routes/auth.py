"""Login (rule S12), refresh and logout, the token keys, and who the caller is.

``POST /auth/login`` (user name and password) answers the next step: ``setup`` after a temporary
password, else ``security_code`` with three positions. ``POST /auth/login/code`` and
``POST /auth/setup`` answer an access token (15 minutes) and a refresh token (30 days, rotated on
every ``POST /auth/refresh``). The logic and the error codes are in :mod:`services.registry.login`;
the three login steps are rate-limited per account and per client address
(:mod:`services.registry.rate_limits`: 429 ``too_many_attempts`` with ``Retry-After``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.registry import login, tokens
from services.registry.login import PASSWORD_MAX_LENGTH, TokenPair
from services.registry.rate_limits import TooManyAttempts, login_limits
from services.registry.routes.refusals import (
    ACCOUNT_LOCKED,
    INVALID_CREDENTIALS,
    TOO_MANY_ATTEMPTS,
    anonymous,
)
from services.registry.security import POSITIONS_ASKED, SECURITY_CODE_LENGTH
from shared.auth import CurrentPrincipal
from shared.errors import SIGNED_IN, Refusal, error_responses
from shared.service import Runtime

router = APIRouter(tags=["login"])

SECRET_MAX_LENGTH = 100  # challenge ids, setup and refresh tokens are 43 characters


def _client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _no_store(response: Response) -> None:
    # Tokens must not be cached by browsers or proxies (RFC 6749, section 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


INVALID_CHALLENGE = Refusal(401, "invalid_challenge", "this login step is unknown, used or expired; log in again")
WRONG_SECURITY_CODE = Refusal(401, "wrong_security_code", "the digits of the security code are wrong; log in again")
INVALID_REFRESH_TOKEN = Refusal(401, "invalid_refresh_token", "this refresh token is not valid; log in again")


# -- bodies -------------------------------------------------------------------------------------


class LoginIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "mihai.ionescu", "password": "Cluj-Napoca 2026 medici"}]}
    )

    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH, description="case-sensitive")


class SetupStep(BaseModel):
    """A temporary password was given: choose a password and a security code (``POST /auth/setup``)."""

    next: Literal["setup"] = "setup"
    setup_token: str
    expires_at: datetime


class CodeStep(BaseModel):
    """Give the digits of the security code at these positions (``POST /auth/login/code``)."""

    next: Literal["security_code"] = "security_code"
    challenge_id: str
    positions: list[int] = Field(description=f"{POSITIONS_ASKED} distinct positions, 1 to {SECURITY_CODE_LENGTH}")
    expires_at: datetime


LoginStep = Annotated[SetupStep | CodeStep, Field(discriminator="next")]

Position = Annotated[int, Field(ge=1, le=SECURITY_CODE_LENGTH)]
Digit = Annotated[str, Field(pattern=r"^[0-9]$")]


class CodeIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "challenge_id": "q7Vb1xWmT3kJ0aYpL9cR2eN5uH8sD4fG6iK1oZ3wB0M",
                    "digits": {"3": "7", "8": "0", "11": "4"},
                }
            ]
        }
    )

    challenge_id: str = Field(min_length=1, max_length=SECRET_MAX_LENGTH)
    digits: dict[Position, Digit] = Field(
        min_length=POSITIONS_ASKED,
        max_length=POSITIONS_ASKED,
        description='the digit at each position asked, e.g. {"3": "7", "8": "0", "11": "4"}',
    )


class SetupIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "setup_token": "Zr4Kq8Wm2Xv6Tn1Bp9Ls3Hd7Jf5Gc0Ya8Ue2Io4Qw6E",
                    "new_password": "Cluj-Napoca 2026 medici",
                    "security_code": "482915306271",
                }
            ]
        }
    )

    setup_token: str = Field(min_length=1, max_length=SECRET_MAX_LENGTH)
    new_password: str = Field(
        min_length=1,
        max_length=PASSWORD_MAX_LENGTH,
        description="at least 12 characters with upper- and lower-case letters and a digit; not the temporary one",
    )
    security_code: str = Field(min_length=1, max_length=64, description="exactly 12 digits")


class RefreshIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "Hq2Wd8Zk4Lm6Nx0Rv3Tb7Pc1Ys5Fg9Je2Ku4Ia8Oe6Mw"}]}
    )

    refresh_token: str = Field(min_length=1, max_length=SECRET_MAX_LENGTH)


class TokensOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds the refresh token is valid, unless used or revoked")

    @classmethod
    def of(cls, pair: TokenPair) -> TokensOut:
        return cls(
            access_token=pair.access_token,
            expires_in=int(pair.access_expires_in.total_seconds()),
            refresh_token=pair.refresh_token,
            refresh_expires_in=int(pair.refresh_expires_in.total_seconds()),
        )


class Jwk(BaseModel):
    kty: str
    crv: str
    x: str
    use: str
    alg: str
    kid: str


class Jwks(BaseModel):
    keys: list[Jwk]


class Me(BaseModel):
    """The caller, as their access token says."""

    user_id: str
    authority_id: str
    country: str
    language: str
    roles: dict[str, list[str]] = Field(description="roles per legislative area (rule S9)")
    authority_roles: list[str]
    coordinator: dict[str, Any] | None


# -- routes -------------------------------------------------------------------------------------


@router.post(
    "/auth/login",
    response_model=LoginStep,
    summary="Step one: user name and password",
    responses=anonymous(INVALID_CREDENTIALS, ACCOUNT_LOCKED, TOO_MANY_ATTEMPTS),
)
async def start_login(
    body: LoginIn, runtime: Runtime, request: Request, response: Response
) -> SetupStep | CodeStep | JSONResponse:
    _no_store(response)
    try:
        with login_limits(runtime).attempt(_client_address(request), body.username) as limited:
            async with login.attempt(runtime.messaging) as uow:
                step = await login.start_login(uow, runtime.settings, body.username, body.password)
            limited.give_back()
    except TooManyAttempts as refused:
        return refused.response()
    if isinstance(step, login.SetupRequired):
        return SetupStep(setup_token=step.setup_token, expires_at=step.expires_at)
    return CodeStep(challenge_id=step.challenge_id, positions=step.positions, expires_at=step.expires_at)


@router.post(
    "/auth/login/code",
    response_model=TokensOut,
    summary="Step two: three digits of the security code",
    responses=anonymous(INVALID_CHALLENGE, WRONG_SECURITY_CODE, INVALID_CREDENTIALS, ACCOUNT_LOCKED, TOO_MANY_ATTEMPTS),
)
async def finish_login(
    body: CodeIn, runtime: Runtime, request: Request, response: Response
) -> TokensOut | JSONResponse:
    _no_store(response)
    try:
        with login_limits(runtime).attempt(_client_address(request)) as limited:
            async with login.attempt(runtime.messaging) as uow:
                pair = await login.finish_login(
                    uow, runtime.settings, body.challenge_id, dict(body.digits), on_account=limited.account
                )
            limited.give_back()
    except TooManyAttempts as refused:
        return refused.response()
    return TokensOut.of(pair)


@router.post(
    "/auth/setup",
    response_model=TokensOut,
    summary="First login or after a reset: choose a password and a 12-digit security code",
    responses=anonymous(
        Refusal(401, "invalid_setup_token", "this setup token is unknown, used or expired; log in again"),
        ACCOUNT_LOCKED,
        Refusal(422, "weak_password", "a password has upper-case and lower-case letters", field="new_password"),
        Refusal(422, "password_unchanged", "choose a password other than the temporary one", field="new_password"),
        Refusal(422, "invalid_security_code", "a security code is exactly 12 digits (0-9)", field="security_code"),
        TOO_MANY_ATTEMPTS,
    ),
)
async def complete_setup(
    body: SetupIn, runtime: Runtime, request: Request, response: Response
) -> TokensOut | JSONResponse:
    _no_store(response)
    try:
        with login_limits(runtime).attempt(_client_address(request)) as limited:
            async with login.attempt(runtime.messaging) as uow:
                pair = await login.complete_setup(
                    uow,
                    runtime.settings,
                    body.setup_token,
                    body.new_password,
                    body.security_code,
                    on_account=limited.account,
                )
            limited.give_back()
    except TooManyAttempts as refused:
        return refused.response()
    return TokensOut.of(pair)


@router.post(
    "/auth/refresh",
    response_model=TokensOut,
    summary="A new token pair for a refresh token, which is used up",
    responses=anonymous(INVALID_REFRESH_TOKEN),
)
async def refresh(body: RefreshIn, runtime: Runtime, response: Response) -> TokensOut:
    _no_store(response)
    async with login.attempt(runtime.messaging) as uow:
        pair = await login.refresh(uow, runtime.settings, body.refresh_token)
    return TokensOut.of(pair)


@router.post(
    "/auth/logout",
    status_code=204,
    response_model=None,
    response_class=Response,
    summary="Revoke the refresh token and every token rotated from the same login",
    responses=anonymous(),
)
async def logout(body: RefreshIn, runtime: Runtime) -> Response:
    async with login.attempt(runtime.messaging) as uow:
        await login.logout(uow, body.refresh_token)
    return Response(status_code=204)


@router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    summary="The public keys that verify access tokens (JWKS)",
)
async def jwks(runtime: Runtime) -> Jwks:
    return Jwks.model_validate(tokens.jwks(runtime.settings))


@router.get(
    "/auth/me",
    response_model=Me,
    summary="Who the caller is, as their access token says",
    responses=error_responses(SIGNED_IN),
)
async def me(principal: CurrentPrincipal) -> Me:
    return Me.model_validate(principal.model_dump())
