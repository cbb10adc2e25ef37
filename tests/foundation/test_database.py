"""The services' connection pool on PostgreSQL: a connection the server closed is never handed out."""

from __future__ import annotations

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shared.database import create_engine
from tests.support import wait_until


async def test_a_pooled_connection_the_server_closed_is_replaced_not_used(postgres):
    url = await postgres.create()
    engine = create_engine(url, pool_size=1)
    admin = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            backend = await connection.scalar(text("SELECT pg_backend_pid()"))
            driver = (await connection.get_raw_connection()).driver_connection
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)  # as a database restart does
        await wait_until(driver.is_closed, message="the pooled connection did not see the server close it")
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != backend
    finally:
        await admin.close()
        await engine.dispose()
