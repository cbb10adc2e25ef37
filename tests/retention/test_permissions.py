"""Endpoint x caller: every retention endpoint is for the Commission (it hosts the system and runs
ops, rule A3). Without a token 401, a user without the authority role commission 403, "ops" 200."""

from __future__ import annotations

import uuid

import pytest

from services.retention.routes import routers
from tests.retention.conftest import OPS, USER, RetentionUnderTest

REQUEST = uuid.UUID("5d1b1a35-3c57-4e5e-9a32-6f0b0c7d1e01")

ENDPOINTS = [
    ("GET", f"/retention/requests/{REQUEST}"),
    ("GET", "/retention/purges/upcoming?within=P30D"),
    ("GET", "/retention/purges/overdue"),
    ("GET", "/retention/report"),
    ("GET", "/retention/report?format=csv"),
    ("GET", "/retention/log/verify"),
    ("GET", "/retention/log"),
    ("POST", "/retention/scheduler/run"),
]


def test_the_table_covers_every_retention_route():
    declared = {
        (method, route.path)
        for router in routers
        for route in router.routes
        for method in route.methods  # type: ignore[attr-defined]
    }
    covered = {(method, path.split("?")[0].replace(str(REQUEST), "{request_id}")) for method, path in ENDPOINTS}
    assert declared == covered


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_only_the_commission_may_read_retention_data(retention: RetentionUnderTest, method, path):
    await retention.feed("closed", REQUEST, 3)

    anonymous = await retention.client.request(method, path)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"

    forged = await retention.client.request(method, path, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "invalid_token"

    user = await retention.client.request(method, path, headers=USER)
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "forbidden"

    assert (await retention.client.request(method, path, headers=OPS)).status_code == 200


@pytest.mark.parametrize("within", ["30 days", "P", "-P1D", "P99999999Y", ""])
async def test_a_bad_period_is_refused_naming_the_field(retention: RetentionUnderTest, within):
    response = await retention.client.get("/retention/purges/upcoming", params={"within": within}, headers=OPS)
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "invalid_duration",
        "message": response.json()["error"]["message"],
        "field": "within",
    }
