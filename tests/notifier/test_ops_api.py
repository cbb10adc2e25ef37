"""The ops API: only the Commission (rule A3) sees deliveries, counts them and sends a refused one
again; deliveries page by status; the metrics report what the sender does."""

from __future__ import annotations

import pytest

from shared.contracts import exchange
from tests.notifier.world import api_client

ROUTES = [
    ("GET", "/deliveries"),
    ("GET", "/deliveries/counts"),
    ("GET", "/deliveries/1"),
    ("POST", "/deliveries/1/resend"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_ops_api_needs_the_commission_role(world, method, path):
    world.tokens.add("commission", authority_roles=["commission"])
    world.tokens.add("handler", roles=["request_handler", "allocator", "data_administrator"])
    world.tokens.add("lda", authority_roles=["local_data_administrator"])
    await world.deliver(exchange.REQUEST_ALLOCATED, world.change(allocated="ro_handler"))
    async with api_client(world) as client:
        assert (await client.request(method, path)).status_code == 401
        refused = await client.request(method, path, headers={"Authorization": "Bearer forged"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_token"
        for who in ("handler", "lda"):
            forbidden = await client.request(method, path, headers={"Authorization": f"Bearer {who}"})
            assert forbidden.status_code == 403
            assert forbidden.json()["error"]["code"] == "forbidden"
        allowed = await client.request(method, path, headers={"Authorization": "Bearer commission"})
        # resend of a queued delivery: refused for its state, not for the caller
        assert allowed.status_code == (409 if method == "POST" else 200), allowed.text


async def test_deliveries_are_listed_by_status_page_by_page(world):
    world.tokens.add("commission", authority_roles=["commission"])
    headers = {"Authorization": "Bearer commission"}
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.deliver(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress"))
    await world.send_all()
    async with api_client(world) as client:
        first = (await client.get("/deliveries", params={"status": "sent", "limit": 3}, headers=headers)).json()
        assert len(first["items"]) == 3
        second = (
            await client.get(
                "/deliveries", params={"status": "sent", "limit": 3, "before": first["next_before"]}, headers=headers
            )
        ).json()
        assert len(second["items"]) == 2 and second["next_before"] is None
        ids = [item["id"] for item in first["items"] + second["items"]]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
        item = first["items"][0]
        assert item["status"] == "sent" and item["sent_at"].endswith(("Z", "+00:00"))
        assert not {"context", "sealed_secret", "subject", "body"} & set(item)
        skipped = (await client.get("/deliveries", params={"status": "skipped"}, headers=headers)).json()
        assert [i["reason"] for i in skipped["items"]] == ["inactive_recipient", "inactive_recipient"]
        counts = (await client.get("/deliveries/counts", headers=headers)).json()["counts"]
        assert counts == {
            "queued": 0,
            "sending": 0,
            "sent": 5,
            "failed": 0,
            "skipped": 2,
            "awaiting_digest": 0,
            "digested": 0,
        }
        assert (await client.get("/deliveries", params={"status": "lost"}, headers=headers)).status_code == 422
        assert (await client.get("/deliveries", params={"limit": 0}, headers=headers)).status_code == 422
        assert (await client.get("/deliveries/0", headers=headers)).status_code == 422
        assert (await client.get("/deliveries/424242", headers=headers)).status_code == 404


async def test_the_metrics_report_queued_sent_failed_retries_and_smtp_up(world):
    world.smtp.recorder.refuse.add(world.address("ro_handler"))
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))
    await world.send_all()
    await world.smtp.stopped()
    await world.deliver(exchange.REQUEST_OVERDUE, world.change("r2", state="in_progress"))
    await world.send()
    async with api_client(world) as client:
        text = (await client.get("/metrics")).text
    assert "imi_notifier_deliveries_sent_total 2.0" in text
    assert "imi_notifier_deliveries_failed_total 1.0" in text
    assert "imi_notifier_delivery_retries_total 1.0" in text
    assert "imi_notifier_deliveries_queued 2.0" in text
    assert "imi_notifier_smtp_up 0.0" in text
