"""What one running notifier holds besides the shared runtime: its settings, its SMTP connections,
its send pace, its metrics and the signal that mail was queued."""

from __future__ import annotations

import asyncio
import time
import weakref

from prometheus_client import Counter, Gauge

from services.notifier.mailer import Mailer
from services.notifier.settings import NotifierSettings
from shared.metrics import ServiceMetrics
from shared.service import ServiceRuntime

# The token bucket of the send pace holds this many seconds' worth of messages.
BURST_SECONDS = 0.1


class NotifierMetrics:
    """The notifier's figures on the service's own Prometheus registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.queued = Gauge(
            "imi_notifier_deliveries_queued", "E-mails waiting to be sent (queued or being sent)", registry=registry
        )
        self.sent = Counter("imi_notifier_deliveries_sent", "E-mails the SMTP server accepted", registry=registry)
        self.failed = Counter(
            "imi_notifier_deliveries_failed", "E-mails the SMTP server refused for good (5xx)", registry=registry
        )
        self.retries = Counter(
            "imi_notifier_delivery_retries",
            "Sending attempts that failed for a time (server down, 4xx) and will be retried",
            registry=registry,
        )
        self.smtp_up = Gauge("imi_notifier_smtp_up", "1 while the SMTP server answers", registry=registry)
        self.digests = Counter("imi_notifier_digests", "Daily summaries queued", registry=registry)


class NotifierState:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.settings = NotifierSettings()
        self.metrics = NotifierMetrics(runtime.metrics)
        self.mailer = Mailer(runtime.settings, on_connection=lambda up: self.metrics.smtp_up.set(1 if up else 0))
        self.wake = asyncio.Event()
        self._next_slot = -float("inf")
        self._bucket: tuple[NotifierSettings, float, int] | None = None

    def _interval_and_burst(self) -> tuple[float, int]:
        # Worked out once per settings object (tests and embedders replace it): a pydantic
        # attribute read was a visible part of each message's time.
        if self._bucket is None or self._bucket[0] is not self.settings:
            rate = self.settings.send_rate
            self._bucket = (self.settings, 1.0 / rate, max(1, int(rate * BURST_SECONDS)))
        return self._bucket[1], self._bucket[2]

    @property
    def burst(self) -> int:
        """How many messages may go at once after a quiet spell: a tenth of a second's worth, at least one."""
        return self._interval_and_burst()[1]

    async def pace(self) -> None:
        """Keep to IMI_NOTIFIER_SEND_RATE messages per second on average, as a token bucket that
        holds :attr:`burst` tokens: a message waits only when the bucket is empty, so an alert
        raised after a quiet spell goes at once instead of a full interval after the last one.

        Each caller reserves its slot before waiting (the generic cell rate algorithm), so several
        senders in parallel share one rate; a caller cancelled while waiting leaves its slot unused."""
        interval, burst = self._interval_and_burst()
        now = time.monotonic()
        # Slots left unused further back than burst - 1 intervals are lost: the bucket holds no more.
        slot = max(self._next_slot, now - (burst - 1) * interval)
        self._next_slot = slot + interval
        wait = slot - now
        if wait > 0:
            await asyncio.sleep(wait)


_states: weakref.WeakKeyDictionary[ServiceRuntime, NotifierState] = weakref.WeakKeyDictionary()


def notifier(runtime: ServiceRuntime) -> NotifierState:
    """The notifier state of ``runtime``, created on first use with settings from the environment."""
    found = _states.get(runtime)
    if found is None:
        found = _states[runtime] = NotifierState(runtime)
    return found


def configure(runtime: ServiceRuntime, settings: NotifierSettings) -> NotifierState:
    """Give ``runtime`` explicit notifier settings (tests, embedding) instead of the environment's."""
    state = notifier(runtime)
    state.settings = settings
    return state
