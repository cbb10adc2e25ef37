"""5. E-mail throughput: the notifier's sender against raw aiosmtplib sends to the same SMTP server.

The notifier's database (PostgreSQL) is given N queued deliveries of the ``request_received``
alert, in the 26 languages, as its handlers write them. The sender's own background task
(``services.notifier.sender.deliver_mail``: claim a batch with SKIP LOCKED, render each alert in
its language and write it out, send the batch over up to four kept SMTP connections at the one
pace, record the outcomes 25 at a time in one transaction while sending goes on) runs until the
SMTP server (``bench.smtp_sink``, an aiosmtpd Controller on loopback in a process of its own) has
accepted all N.

Floor: the same N messages, rendered and written out beforehand by the notifier's own code, their
bytes sent one after another with raw aiosmtplib (``sendmail``) over one connection to the same
server.

The sender paces itself at ``IMI_NOTIFIER_SEND_RATE`` messages per second (200 by default since
issue #8; it was 10). The ratio is taken with the pace lifted (``send_rate`` 10,000), which
measures the sender's own work; a short run at the default pace is reported next to it, since that
is what a deployment gets unless it sets the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiosmtplib
from sqlalchemy import func, insert, select

from bench.core import Mode, Result, log, safe_ratio
from bench.infra import Infra, SmtpSink, migrate
from shared.languages import LANGUAGE_CODES


class _NoTokens:
    async def verify(self, token: str) -> Any:
        raise RuntimeError("no HTTP here")


def deliveries(count: int, seed: int = 3) -> list[dict[str, Any]]:
    from services.notifier.deliveries import message_id_for
    from services.notifier.names import area_name, country_name

    rng = random.Random(seed)
    languages = sorted(LANGUAGE_CODES)
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        language = languages[n % len(languages)]
        event_id = uuid.UUID(int=rng.getrandbits(128))
        request_id = uuid.UUID(int=rng.getrandbits(128))
        recipient = f"handler{n}@authority{n % 97}.example.eu"
        reference = f"REQ-2026-{n:06d}"
        rows.append(
            {
                "event_id": event_id,
                "event_type": "exchange.request.received.v1",
                "kind": "request_received",
                "message_id": message_id_for(event_id, recipient),
                "recipient": recipient,
                "user_id": uuid.UUID(int=rng.getrandbits(128)),
                "authority_id": uuid.UUID(int=rng.getrandbits(128)),
                "language": language,
                "status": "queued",
                "context": {
                    "request_reference": reference,
                    "legislative_area": area_name("professional_qualifications", language),
                    "requesting_country": country_name("IE", language),
                    "responding_country": country_name("RO", language),
                    "authority_name": "Colegiul Medicilor din Cluj",
                    "reply_date": (date.today() + timedelta(days=30)).isoformat(),
                },
                "link": f"/requests/{request_id}",
                "request_id": request_id,
                "request_reference": reference,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now - timedelta(seconds=1),
            }
        )
    return rows


async def sender_run(
    runtime: Any, sink: SmtpSink, rows: list[dict[str, Any]], send_rate: float, timeout: float
) -> dict[str, Any]:
    """Queue ``rows``, run the sender's background task until the server has them all."""
    from services.notifier.models import Delivery
    from services.notifier.sender import deliver_mail
    from services.notifier.settings import NotifierSettings
    from services.notifier.state import configure

    configure(runtime, NotifierSettings(send_rate=send_rate))
    already = len(sink.read())
    async with runtime.sessions() as session, session.begin():
        await session.execute(insert(Delivery), rows)
    started = time.time()
    task = asyncio.get_running_loop().create_task(deliver_mail(runtime))
    try:
        complete = await sink.wait_for(already + len(rows), timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    arrivals = sink.read()[already:]
    last = max((a["t"] for a in arrivals), default=started)
    async with runtime.sessions() as session:
        sent = await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent"))
    elapsed = last - started
    return {
        "messages": len(rows),
        "received": len(arrivals),
        "complete": complete,
        "seconds": round(elapsed, 2),
        "per_s": round(len(arrivals) / elapsed, 1) if elapsed > 0 else None,
        "recorded_sent": int(sent or 0),
        "send_rate_setting": send_rate,
    }


async def raw_run(runtime: Any, sink: SmtpSink, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The same messages, rendered and written out by the notifier's code beforehand, sent with raw aiosmtplib."""
    from services.notifier.mailer import envelope_sender
    from services.notifier.sender import Claimed, message_of

    messages = [
        message_of(
            runtime,
            Claimed(
                id=n,
                claim=uuid.uuid4(),
                kind=row["kind"],
                language=row["language"],
                recipient=row["recipient"],
                message_id=row["message_id"].replace("@", "-raw@"),
                context=row["context"],
                link=row["link"],
                sealed_secret=None,
                attempts=0,
            ),
        )
        for n, row in enumerate(rows)
    ]
    sender = envelope_sender(runtime.settings)
    already = len(sink.read())
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30)
    started = time.time()
    await smtp.connect()
    try:
        for message, row in zip(messages, rows, strict=True):
            await smtp.sendmail(sender, [row["recipient"]], message)
    finally:
        with contextlib.suppress(Exception):
            await smtp.quit()
    await sink.wait_for(already + len(rows), 30)
    arrivals = sink.read()[already:]
    elapsed = max(a["t"] for a in arrivals) - started
    return {
        "messages": len(rows),
        "received": len(arrivals),
        "seconds": round(elapsed, 2),
        "per_s": round(len(arrivals) / elapsed, 1),
        "bytes_avg": round(sum(a["bytes"] for a in arrivals) / len(arrivals)),
    }


async def run(infra: Infra, mode: Mode) -> Result:
    from services import load_definition
    from shared.service import ServiceRuntime

    count = mode.pick(3000, 500, 40)
    paced = mode.pick(60, 30, 10)
    result = Result(
        "mail",
        "E-mail throughput of the notifier's sender against raw aiosmtplib",
        mode.name,
        sizes={"messages": count, "messages_at_default_pace": paced},
        target="sender >= 0.7 x raw aiosmtplib throughput",
        ratio_means="sender messages/s (pace lifted) over raw aiosmtplib messages/s, same server, one connection each",
    )
    sink = SmtpSink(infra)
    sink.start()
    url = await infra.create_database()
    await migrate("notifier", url)
    settings = infra.settings(notifier_database_url=url, smtp_host="127.0.0.1", smtp_port=sink.port)
    runtime = ServiceRuntime(load_definition("notifier"), settings, verifier=_NoTokens())
    try:
        await sink.wait_ready()
        rows = deliveries(count + paced)
        log(f"mail: raw aiosmtplib, {count} messages")
        floor = await raw_run(runtime, sink, rows[:count])
        log(f"mail: the notifier's sender, {count} messages, pace lifted")
        unpaced = await sender_run(runtime, sink, rows[:count], 10_000, timeout=max(120, count / 5))
        log(f"mail: the notifier's sender, {paced} messages, default pace")
        from services.notifier.settings import NotifierSettings

        default_rate = NotifierSettings().send_rate
        at_default = await sender_run(runtime, sink, rows[count:], default_rate, timeout=paced / default_rate + 60)
    finally:
        await runtime.engine.dispose()
        sink.stop()
    result.figures = {"sender_pace_lifted": unpaced, "sender_default_pace": at_default}
    result.floor = {"raw_aiosmtplib": floor}
    result.ratio = safe_ratio(unpaced["per_s"], floor["per_s"])
    result.met = result.ratio is not None and result.ratio >= 0.7 and unpaced["complete"]
    result.headline = (
        f"sender {unpaced['per_s']} msg/s with the pace lifted; {at_default['per_s']} msg/s at the default "
        f"IMI_NOTIFIER_SEND_RATE={default_rate:g}"
    )
    result.floor_headline = f"raw aiosmtplib {floor['per_s']} msg/s ({floor['bytes_avg']} bytes each)"
    result.notes.append(
        f"At the default IMI_NOTIFIER_SEND_RATE ({default_rate:g}/s) the sender is capped by design; the ratio "
        f"at that pace would be {safe_ratio(at_default['per_s'], floor['per_s'])}."
    )
    return result
