"""The one source of "now" for deadlines, reply dates and retention (ARCHITECTURE.md, Time).

Code never calls ``datetime.now()`` for domain time; it asks the clock the app was built with, so
tests travel in time instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """Wall-clock time, optionally shifted by a fixed offset (used to travel in time in a running system)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def travel(self, delta: timedelta) -> None:
        """Move this clock forward (or back) by ``delta``."""
        self.offset += delta


class FrozenClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start")

    def now(self) -> datetime:
        return self._now

    def travel(self, delta: timedelta) -> None:
        self._now += delta
