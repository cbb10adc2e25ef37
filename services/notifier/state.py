"""What one running notifier holds besides the shared runtime: its settings, its SMTP connection,
its metrics and the signal that mail was queued."""

from __future__ import annotations

import asyncio
import time
import weakref

from prometheus_client import Counter, Gauge

from services.notifier.mailer import Mailer
from services.notifier.settings import NotifierSettings
from shared.metrics import ServiceMetrics
from shared.service import ServiceRuntime


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
        self._last_send = -float("inf")
        self._pace_lock = asyncio.Lock()

    async def pace(self) -> None:
        """Keep to IMI_NOTIFIER_SEND_RATE messages per second."""
        async with self._pace_lock:
            interval = 1.0 / self.settings.send_rate
            wait = self._last_send + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_send = time.monotonic()


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
