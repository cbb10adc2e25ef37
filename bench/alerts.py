"""2. Alert latency: from the response to ``POST /requests/{id}/send`` to the e-mail accepted by an
SMTP server on loopback, at a steady 50 requests per second.

The exchange and the notifier run as containers run them (``python -m services serve``) on
PostgreSQL and RabbitMQ; their read models are fed first with the same registry events (each
responding authority has one request handler and one office address, so every request sent
raises two ``request_received`` e-mails, in the responder's language). The SMTP server is
``bench.smtp_sink`` (an aiosmtpd Controller in a process of its own) recording each message's
arrival with ``time.time()``; the request's reference in the subject ties it to its send call.

Drafts are written first (not timed); then sends go out open-loop at the target rate: send ``i``
starts at ``t0 + i / rate`` whatever the previous ones are doing. Latency is arrival minus the
send call's response, for the first e-mail of a request and for the last.

It runs three times: with the notifier's default ``IMI_NOTIFIER_SEND_RATE`` (200 messages/s on
average since issue #8, twice the 100 e-mails/s that 50 requests/s raise; it was 10), with the pace
lifted (what the notifier's machinery does), and with the pace lifted at 20 requests/s (a load this
machine sustains).

Floor: the SMTP server's own acceptance latency, a message sent with raw aiosmtplib (one
connection) at the same rate, from the call to its arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import aiosmtplib
import httpx

from bench.core import Mode, Result, latency_summary, log, safe_ratio
from bench.infra import Infra, ServiceProcess, SmtpSink, migrate, services_running
from bench.world import World, build_world, draft_body, pick_responder, prefeed
from services.notifier.settings import NotifierSettings

RATE = 50.0
GENTLE_RATE = 20.0  # a rate this two-core machine sustains end to end, for comparison


async def write_drafts(url: str, world: World, count: int) -> list[tuple[str, str]]:
    """(request id, token of its requester) for ``count`` drafts, written 8 at a time."""
    requesters = world.requesters()
    rng = random.Random(11)
    out: list[tuple[str, str]] = []
    semaphore = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(n: int) -> None:
            user = requesters[n % len(requesters)]
            body = draft_body(rng, pick_responder(rng, world, user))
            async with semaphore:
                response = await client.post("/requests", json=body, headers={"Authorization": f"Bearer {user.token}"})
            response.raise_for_status()
            out.append((response.json()["id"], user.token))

        await asyncio.gather(*(one(n) for n in range(count)))
    return out


async def send_steadily(
    url: str, drafts: list[tuple[str, str]], rate: float
) -> tuple[dict[str, float], list[str], float]:
    """Send each draft at its slot; returns reference -> response time, errors and achieved rate."""
    responded: dict[str, float] = {}
    errors: list[str] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        start = time.perf_counter() + 0.2

        async def one(n: int, request_id: str, token: str) -> None:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await client.post(f"/requests/{request_id}/send", headers={"Authorization": f"Bearer {token}"})
            now = time.time()
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:200]}")
                return
            responded[response.json()["reference"]] = now

        await asyncio.gather(*(one(n, rid, tok) for n, (rid, tok) in enumerate(drafts)))
        achieved = len(drafts) / max(time.perf_counter() - start, 1e-9)
    return responded, errors, achieved


async def scenario(
    infra: Infra, mode: Mode, world: World, sends: int, send_rate: float | None, rate: float = RATE
) -> dict[str, Any]:
    exchange_db = await infra.create_database()
    notifier_db = await infra.create_database()
    await migrate("exchange", exchange_db)
    await migrate("notifier", notifier_db)
    await prefeed("exchange", infra.settings(exchange_database_url=exchange_db), world)
    await prefeed("notifier", infra.settings(notifier_database_url=notifier_db), world)
    sink = SmtpSink(infra)
    sink.start()
    notifier_env = {"IMI_SMTP_HOST": "127.0.0.1", "IMI_SMTP_PORT": str(sink.port), "IMI_SMTP_SECURITY": "none"}
    if send_rate is not None:
        notifier_env["IMI_NOTIFIER_SEND_RATE"] = str(send_rate)
    exchange = ServiceProcess(infra, "exchange", exchange_db)
    notifier = ServiceProcess(infra, "notifier", notifier_db, **notifier_env)
    try:
        await sink.wait_ready()
        async with services_running(exchange, notifier):
            drafts = await write_drafts(exchange.url, world, sends)
            await asyncio.sleep(1.0)  # let the drafts' events settle
            baseline = len(sink.read())
            responded, errors, achieved = await send_steadily(exchange.url, drafts, rate)
            expected = 2 * len(responded)
            pace = send_rate if send_rate is not None else NotifierSettings().send_rate
            budget = 60 + expected / pace * 1.5
            complete = await sink.wait_for(baseline + expected, budget)
            arrivals = [a for a in sink.read()[baseline:] if a["reference"] in responded]
    finally:
        sink.stop()
        await infra.drop_database(exchange_db)
        await infra.drop_database(notifier_db)
    by_reference: dict[str, list[float]] = {}
    for arrival in arrivals:
        by_reference.setdefault(arrival["reference"], []).append(arrival["t"])
    first = [min(ts) - responded[ref] for ref, ts in by_reference.items()]
    last = [max(ts) - responded[ref] for ref, ts in by_reference.items()]
    return {
        "notifier_send_rate": send_rate if send_rate is not None else f"default ({NotifierSettings().send_rate:g})",
        "requests_per_s": rate,
        "sends": len(drafts),
        "send_rate_achieved_per_s": round(achieved, 1),
        "send_errors": len(errors),
        "first_error": errors[0] if errors else None,
        "emails_expected": expected,
        "emails_received": len(arrivals),
        "complete": complete,
        "first_email": latency_summary(first),
        "last_email": latency_summary(last),
    }


async def floor(infra: Infra, count: int) -> dict[str, Any]:
    """Raw aiosmtplib at the same rate: call to arrival at the sink."""
    from email.message import EmailMessage

    sink = SmtpSink(infra)
    sink.start()
    try:
        await sink.wait_ready()
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, timeout=30)
        await smtp.connect()
        called: dict[str, float] = {}
        start = time.perf_counter()
        for n in range(count):
            delay = start + n / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            reference = f"REQ-2026-{n:06d}"
            message = EmailMessage()
            message["Subject"] = f"New request {reference} received"
            message["From"] = "no-reply@imi.localhost"
            message["To"] = "handler@example.eu"
            message.set_content("A new request was received. " * 40)
            called[reference] = time.time()
            await smtp.send_message(message)
        with contextlib.suppress(Exception):
            await smtp.quit()
        await sink.wait_for(count, 30)
        latencies = [a["t"] - called[a["reference"]] for a in sink.read() if a["reference"] in called]
    finally:
        sink.stop()
    return {"messages": count, "smtp_acceptance": latency_summary(latencies)}


async def run(infra: Infra, mode: Mode) -> Result:
    seconds = mode.pick(20.0, 6.0, 1.0)
    sends = int(RATE * seconds)
    result = Result(
        "alerts",
        "Alert latency: send call's response to the e-mail accepted by SMTP, at 50 requests/s",
        mode.name,
        sizes={"rate_per_s": RATE, "seconds": seconds, "sends": sends, "emails_per_request": 2},
        target="p99 < 1 s (first e-mail of each request), default settings",
        ratio_means="p99 with the notifier's default settings over the SMTP server's own acceptance p99",
    )
    world = build_world(infra.tokens, authorities_per_country=mode.pick(6, 4, 2), handlers_per_authority=1)
    log(f"alerts: floor, {sends} raw SMTP sends at {RATE:g}/s")
    floor_figures = await floor(infra, sends)
    log(f"alerts: exchange + notifier, default send rate, {sends} sends at {RATE:g}/s")
    default = await scenario(infra, mode, world, sends, None)
    log(f"alerts: exchange + notifier, send rate lifted, {sends} sends at {RATE:g}/s")
    lifted = await scenario(infra, mode, world, sends, 10_000.0)
    gentle = int(GENTLE_RATE * seconds)
    log(f"alerts: exchange + notifier, send rate lifted, {gentle} sends at {GENTLE_RATE:g}/s")
    below = await scenario(infra, mode, world, gentle, 10_000.0, GENTLE_RATE)
    result.figures = {
        "default_settings": default,
        "send_rate_lifted": lifted,
        f"send_rate_lifted_at_{GENTLE_RATE:g}_per_s": below,
    }
    result.floor = floor_figures
    p99 = default["first_email"]["p99_ms"]
    lifted_p99 = lifted["first_email"]["p99_ms"]
    result.ratio = safe_ratio(p99, floor_figures["smtp_acceptance"]["p99_ms"])
    result.met = bool(default["complete"] and p99 is not None and p99 < 1000)
    result.headline = (
        f"first e-mail p50 {default['first_email']['p50_ms']} ms, p99 {p99} ms (default IMI_NOTIFIER_SEND_RATE); "
        f"pace lifted: p50 {lifted['first_email']['p50_ms']} ms, p99 {lifted_p99} ms"
    )
    result.floor_headline = (
        f"SMTP acceptance p50 {floor_figures['smtp_acceptance']['p50_ms']} ms, "
        f"p99 {floor_figures['smtp_acceptance']['p99_ms']} ms"
    )
    default_rate = NotifierSettings().send_rate
    if default_rate < 2 * RATE:
        result.notes.append(
            f"At {RATE:g} requests/s two e-mails per request are {2 * RATE:g} e-mails/s; the notifier's default pace "
            f"is {default_rate:g}/s, so its queue grows for as long as the load lasts and latency grows with the "
            "length of the run."
        )
    else:
        result.notes.append(
            f"At {RATE:g} requests/s two e-mails per request are {2 * RATE:g} e-mails/s, within the notifier's default "
            f"pace of {default_rate:g}/s (a token bucket: a tenth of a second's worth may go at once)."
        )
    if lifted_p99 is not None:
        result.notes.append(f"With the pace lifted the p99 target is {'met' if lifted_p99 < 1000 else 'missed'}.")
    result.notes.append(
        f"At {GENTLE_RATE:g} requests/s with the pace lifted: first e-mail p50 {below['first_email']['p50_ms']} ms, "
        f"p99 {below['first_email']['p99_ms']} ms (what this machine sustains with everything on its two cores)."
    )
    return result
