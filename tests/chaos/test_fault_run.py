"""The fault run, small (issue 9): a few dozen requests through their whole life while RabbitMQ
is stopped and started and later SIGKILLed and started, each of the four services is SIGKILLed and
restarted, PostgreSQL is stopped as by a crash and started, and the SMTP server is down for
12 seconds (60 in the large run, ``python -m bench chaos``). Afterwards every request is in its
final state, every expected e-mail was delivered exactly once, every closed request has its
deletion deadline, every outbox and queue is empty and no message was dead-lettered. The one
exception allowed: mail the notifier held claimed when it was SIGKILLed, handed to the server but
not yet recorded as sent, goes out again after the claim's lease with the same Message-ID; such
doubles are counted apart (the large run reports them), any other double fails.

The run owns its PostgreSQL cluster and RabbitMQ node (bench/private.py), so it never restarts the
machine's shared ones. It needs the PostgreSQL server binaries and a RabbitMQ installation, and to
run as root (or as the postgres/rabbitmq users); without them it fails, saying what is missing:
it is never skipped. The driver, the faults and the checks are bench/chaos.py's."""

from __future__ import annotations

import pytest

from bench.chaos import SIZES, fault_run
from bench.private import PrivateInfraUnavailable, PrivatePostgres, PrivateRabbitMQ


def _prerequisites() -> None:
    try:
        PrivatePostgres()
        PrivateRabbitMQ()
    except PrivateInfraUnavailable as exc:
        pytest.fail(f"the fault run cannot own its PostgreSQL and RabbitMQ here: {exc}")


@pytest.mark.timeout(480)
async def test_requests_survive_broker_database_service_and_smtp_faults() -> None:
    _prerequisites()
    report = await fault_run(SIZES["ci"])
    figures = report.figures
    assert not report.problems, (
        "\n".join(report.problems) + "\n" + "\n".join(f"== {name}\n{tail}" for name, tail in report.logs.items())
    )
    assert figures["requests"]["finished"] == SIZES["ci"].requests
    assert figures["emails"]["delivered"] == figures["emails"]["expected"] > 0
    # A double is allowed only for mail the SIGKILLed notifier held (same Message-ID, see bench/chaos.py).
    assert figures["emails"]["duplicates"] == figures["emails"]["duplicates_held_by_killed_notifier"]
    assert [f["name"] for f in figures["faults"]].count("rabbitmq_restart") == 1
    assert len(figures["faults"]) == 8
    assert all(f["recovered_s"] is not None for f in figures["faults"])
