"""Proof of deletion: the purge log, its verification and the report for data-protection officers."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from services.retention import purge_log
from services.retention.report import build_report, report_csv, verification_out
from services.retention.routes.common import COMMISSION_ONLY, ERRORS
from services.retention.scheduler import run_pass
from services.retention.schemas import LogEntryOut, ReportOut, VerificationOut
from shared.service import Runtime

router = APIRouter(prefix="/retention", tags=["retention"], dependencies=COMMISSION_ONLY, responses=ERRORS)


@router.get(
    "/report",
    response_model=ReportOut,
    summary="Purges per month, pending and overdue, with the log's state",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"}},
)
async def retention_report(
    runtime: Runtime,
    report_format: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> ReportOut | Response:
    """For data-protection officers (rule P2). Overdue must be 0; keep ``log.head_hash`` outside the
    system: a later report whose log does not extend it shows the log was rewritten."""
    now = runtime.clock.now()
    async with runtime.sessions() as session:
        report = await build_report(session, runtime.settings, now)
    if report_format == "csv":
        filename = f"retention-report-{now:%Y-%m-%d}.csv"
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return report


@router.get("/log/verify", response_model=VerificationOut, summary="Check the whole purge log's hash chain")
async def verify_log(runtime: Runtime) -> VerificationOut:
    """Recomputes every entry's hash and link; ``first_broken`` names the first entry that does not
    hold (missing, content_altered, chain_broken, head_mismatch)."""
    async with runtime.sessions() as session:
        return verification_out(await purge_log.verify(session))


@router.get("/log", response_model=list[LogEntryOut], summary="Export the purge log, oldest entry first")
async def export_log(
    runtime: Runtime,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="return entries after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[LogEntryOut]:
    """The entries as stored, so anyone can recompute the chain (see ``purge_log`` for the format)."""
    async with runtime.sessions() as session:
        entries = await purge_log.entries_page(session, after, limit)
    return [
        LogEntryOut(
            seq=e.seq,
            kind=e.kind,
            order_id=e.order_id,
            request_id=e.request_id,
            due_at=e.due_at,
            occurred_at=e.occurred_at,
            recorded_at=e.recorded_at,
            attempt=e.attempt,
            deleted_count=e.deleted_count,
            prev_hash=e.prev_hash,
            hash=e.hash,
        )
        for e in entries
    ]


class PassOut(BaseModel):
    settled: int
    orders_issued: int
    orders_resent: int
    overdue_reported: int
    pending: int
    overdue: int


@router.post("/scheduler/run", response_model=PassOut, summary="Run one scheduler pass now")
async def run_scheduler(runtime: Runtime) -> PassOut:
    """Ops: issue due purge orders, re-send unconfirmed ones and report overdue purges now, instead
    of waiting for the next pass (rule P2)."""
    result = await run_pass(runtime, runtime.clock.now())
    return PassOut(**dataclasses.asdict(result))
