"""Rate limits on the login steps (``POST /auth/login``, ``/auth/login/code``, ``/auth/setup``).

Two budgets, each a sliding window over the service clock (so tests travel in time instead of
sleeping): at most :data:`ACCOUNT_LIMIT` attempts per minute on one account and
:data:`ADDRESS_LIMIT` from one client address, whatever the step. An attempt is taken from both
budgets before any work is done (no database read, no argon2), and given back when the step
succeeds: only refusals use the budgets up, so people who log in normally, even many behind one
address, never meet the limit, while guessing does. The lockout after five failures in a row
(:mod:`services.registry.login`) stays what ends guessing for good; these limits slow guessing
across accounts (one address) and pace it on one account (many addresses).

Beyond a budget the answer is 429 ``too_many_attempts`` with ``Retry-After`` (seconds), the same
whether or not the account exists: the account's key is the user name as typed (case-folded),
counted before it is looked up, so an unknown name is limited exactly like a known one. The code
and setup steps name no user; their account is the user their challenge belongs to, known once the
challenge is read (a refusal there rolls back: the challenge is not spent).

The counts live in this process's memory: each replica counts on its own, so N replicas allow up
to N times the budget (the lockout, in the database, is shared). The client address is the ASGI
peer: behind a proxy, run uvicorn with ``--forwarded-allow-ips`` (or ``FORWARDED_ALLOW_IPS``)
naming the proxy, so the address is the client's and not the proxy's. Memory is bounded: at most
:data:`MAX_KEYS` keys per budget; beyond that the key used longest ago is forgotten first.

The ``limits`` library was considered (its moving-window memory storage); it reads ``time.time()``
itself and cannot take the service clock, so this is a small sliding-window log instead.
"""

from __future__ import annotations

import math
import unicodedata
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi.responses import JSONResponse

from shared.clock import Clock
from shared.errors import ApiError, error_response
from shared.service import ServiceRuntime


@dataclass(frozen=True)
class Limit:
    attempts: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.window <= timedelta(0):
            raise ValueError("a limit allows at least one attempt in a positive window")


ACCOUNT_LIMIT = Limit(attempts=10, window=timedelta(minutes=1))
ADDRESS_LIMIT = Limit(attempts=30, window=timedelta(minutes=1))
MAX_KEYS = 100_000
SWEEP_EVERY = 1_000  # attempts between sweeps of keys whose window is empty


class TooManyAttempts(ApiError):
    """Over a login budget: 429 ``too_many_attempts``, with ``Retry-After`` in whole seconds."""

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(429, "too_many_attempts", f"too many login attempts; try again in {self.retry_after} seconds")

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, headers={"Retry-After": str(self.retry_after)})


@dataclass(frozen=True)
class Taken:
    """One attempt taken from a window, to give back if the step succeeds."""

    key: str
    at: datetime


@dataclass
class SlidingWindow:
    """At most ``limit.attempts`` attempts per key within any ``limit.window``: a log of the
    instants of the attempts counted, per key, oldest first."""

    limit: Limit
    clock: Clock
    max_keys: int = MAX_KEYS
    _log: dict[str, deque[datetime]] = field(default_factory=dict)
    _since_sweep: int = 0

    def _current(self, key: str, now: datetime) -> deque[datetime]:
        log = self._log.get(key)
        if log is None:
            return deque()
        while log and log[0] <= now - self.limit.window:
            log.popleft()
        return log

    def take(self, key: str) -> Taken:
        """Count one attempt for ``key``, or raise :class:`TooManyAttempts` (counting nothing)
        when the window already holds ``limit.attempts``."""
        now = self.clock.now()
        log = self._current(key, now)
        if len(log) >= self.limit.attempts:
            raise TooManyAttempts(log[0] + self.limit.window - now)
        if key in self._log:
            del self._log[key]  # re-inserted last: the keys are kept in the order they were last used
        else:
            self._make_room()
        self._log[key] = log
        log.append(now)
        return Taken(key, now)

    def give_back(self, taken: Taken) -> None:
        log = self._log.get(taken.key)
        if log is not None and taken.at in log:
            log.remove(taken.at)

    def check(self, key: str) -> None:
        """Raise :class:`TooManyAttempts` when ``key`` has no attempt left, counting nothing."""
        now = self.clock.now()
        log = self._current(key, now)
        if len(log) >= self.limit.attempts:
            raise TooManyAttempts(log[0] + self.limit.window - now)

    def __len__(self) -> int:
        return len(self._log)

    def _make_room(self) -> None:
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY or len(self._log) >= self.max_keys:
            self._since_sweep = 0
            now = self.clock.now()
            for key in [k for k in self._log if not self._current(k, now)]:
                del self._log[key]
        while len(self._log) >= self.max_keys:  # the key used longest ago goes first
            del self._log[next(iter(self._log))]


def account_key(username: str) -> str:
    """The user name as typed, in one normal form and case-folded: variants share one budget."""
    return unicodedata.normalize("NFKC", username).casefold()


class LoginAttempt:
    """The attempts one login request took; :meth:`give_back` gives them back."""

    def __init__(self, limits: LoginLimits) -> None:
        self._limits = limits
        self._taken: list[tuple[SlidingWindow, Taken]] = []
        self._account: str | None = None

    def take(self, window: SlidingWindow, key: str) -> None:
        self._taken.append((window, window.take(key)))

    def account(self, username: str) -> None:
        """Count the attempt against the account too (once per request)."""
        key = account_key(username)
        if self._account is None:
            self._account = key
            self.take(self._limits.accounts, key)

    def give_back(self) -> None:
        """The step succeeded (or was refused before it was tried): its attempts are given back."""
        for window, taken in self._taken:
            window.give_back(taken)
        self._taken.clear()


class LoginLimits:
    """The registry's login budgets, per client address and per account."""

    def __init__(self, clock: Clock, account: Limit = ACCOUNT_LIMIT, address: Limit = ADDRESS_LIMIT) -> None:
        self.accounts = SlidingWindow(account, clock)
        self.addresses = SlidingWindow(address, clock)

    @contextmanager
    def attempt(self, address: str, username: str | None = None) -> Iterator[LoginAttempt]:
        """Take an attempt from the address's budget (and the account's, when the user name is
        known now); raise :class:`TooManyAttempts` when either is spent."""
        attempt = LoginAttempt(self)
        if username is not None:
            # Check the account first, so that a spent account does not use up the address.
            self.accounts.check(account_key(username))
        attempt.take(self.addresses, address)
        if username is not None:
            attempt.account(username)
        try:
            yield attempt
        except TooManyAttempts:
            attempt.give_back()  # refused for the account once it was known: the address is not charged
            raise


_limits: weakref.WeakKeyDictionary[ServiceRuntime, LoginLimits] = weakref.WeakKeyDictionary()


def login_limits(runtime: ServiceRuntime) -> LoginLimits:
    """The login budgets of this running registry (created on first use, on its clock)."""
    found = _limits.get(runtime)
    if found is None:
        found = _limits[runtime] = LoginLimits(runtime.clock)
    return found
