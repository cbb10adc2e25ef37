"""JSON logs carry the correlation id across services (shared/logging.py): a service handling an
event logs with the correlation id of the user action that caused it, so one action can be
followed through every service's logs."""

from __future__ import annotations

import json
import logging

from shared.events.envelope import Event
from shared.logging import configure_logging, correlation_id_var, get_logger
from shared.outbox import Handlers, UnitOfWork
from tests.foundation.stack import running_stack
from tests.support import PROBE_SENT, Probe, wait_until


async def test_a_consumer_logs_with_the_correlation_id_of_the_action_that_caused_the_event(tmp_path, capsys, namespace):
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging("INFO", "json")
    handlers = Handlers()

    @handlers.on(PROBE_SENT)
    async def note(uow: UnitOfWork, event: Event[Probe]) -> None:
        get_logger("tests.consumer").info("probe handled", value=event.data.value)

    lines: list[dict[str, object]] = []

    def handled() -> list[dict[str, object]]:
        out = capsys.readouterr().out
        lines.extend(json.loads(line) for line in out.splitlines() if line.startswith("{"))
        return [line for line in lines if line.get("event") == "probe handled"]

    try:
        async with running_stack(
            "embedded",
            namespace=namespace,
            producer_url=f"sqlite+aiosqlite:///{tmp_path / 'exchange.db'}",
            consumer_url=f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}",
            amqp_url=None,
            broker_control=None,
            handlers=handlers,
        ) as stack:
            token = correlation_id_var.set("trace-7")  # as the HTTP middleware sets it from X-Correlation-ID
            try:
                await stack.emit("v")
            finally:
                correlation_id_var.reset(token)
            assert correlation_id_var.get() is None  # the consumer has no context of its own but the event's
            [record] = await wait_until(handled, message="the consumer's log line")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert record["correlation_id"] == "trace-7"
    assert record["value"] == "v"
    assert record["level"] == "info" and "timestamp" in record
