"""Transactional outbox and inbox (ARCHITECTURE.md, Delivery guarantees).

A state change and the events it causes commit in one transaction: :meth:`UnitOfWork.emit` writes
the event as an ``outbox`` row beside the business rows. The :class:`OutboxRelay` publishes pending
rows with broker confirms right after each commit (it is woken by the commit) and on a polling loop
as the safety net. Pending rows are found by ``published_at IS NULL``, never by a "last id seen"
cursor, because ids become visible out of order; ``FOR UPDATE SKIP LOCKED`` lets relays in several
replicas share the work on PostgreSQL.

On the consuming side the ``inbox`` records each handled event id in the handler's own transaction:
a redelivered event finds its id there and is acknowledged without running again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.bus.bus import EventBus
from shared.clock import Clock
from shared.events.envelope import Contract, Envelope, Event, EventData
from shared.logging import causation_id_var, correlation_id_var, current_correlation_id, get_logger
from shared.settings import Settings
from shared.waiting import wait_set

log = get_logger(__name__)

D = TypeVar("D", bound=EventData)

_STAGED = "imi.outbox.staged"


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """The outbox and inbox tables, added to a service's own metadata (and migrations)."""
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("event_type", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )
    Index(
        "ix_outbox_pending",
        outbox.c.seq,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    Index("ix_outbox_published_at", outbox.c.published_at)
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", Uuid, primary_key=True),
        Column("event_type", String(200), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
    )
    return MessagingTables(outbox=outbox, inbox=inbox)


def utcnow() -> datetime:
    # Bookkeeping time (pruning, lag), deliberately not the domain clock that tests move.
    return datetime.now(UTC)


class UnitOfWork:
    """One transaction of a service: its session, its clock, and the events it will publish."""

    def __init__(
        self,
        session: AsyncSession,
        clock: Clock,
        tables: MessagingTables,
        producer: str,
        settings: Settings | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        # The service's settings, for rules that depend on configuration (a retention period, say);
        # None where a unit of work is made outside a running service (a command, a test's stack).
        self.settings = settings
        self._tables = tables
        self._producer = producer

    async def emit(self, contract: Contract[D], data: D) -> Envelope:
        """Stage an event; it is published only if (and once) this transaction commits."""
        if contract.producer != self._producer:
            raise ValueError(f"{self._producer} cannot emit {contract.name}: events are named after their producer")
        envelope = Envelope(
            type=contract.name,
            occurred_at=self.clock.now(),
            producer=self._producer,
            correlation_id=current_correlation_id(),
            causation_id=causation_id_var.get(),
            data=data.model_dump(mode="json"),
        )
        await self.session.execute(
            insert(self._tables.outbox).values(
                event_id=envelope.id,
                event_type=envelope.type,
                payload=envelope.model_dump_json(),
                created_at=utcnow(),
                attempts=0,
            )
        )
        self.session.info[_STAGED] = True
        return envelope


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        bus: EventBus,
        *,
        batch_size: int = 100,
        poll_interval: float = 2.0,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox = tables.outbox
        self._bus = bus
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._on_published = on_published or (lambda _n: None)
        self._lock = asyncio.Lock()

    def kick(self) -> None:
        """Called after a commit that staged events: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await wait_set(self._wake, self._poll_interval)
            self._wake.clear()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay pass failed; will retry", error=repr(exc))

    async def drain(self) -> int:
        """Publish every pending row; stop early (rows stay pending) when the broker refuses."""
        total = 0
        async with self._lock:
            while True:
                published, complete = await self._publish_batch()
                total += published
                if not complete or published < self._batch_size:
                    return total

    async def _publish_batch(self) -> tuple[int, bool]:
        outbox = self._outbox
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(outbox.c.seq, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, True
            results = await asyncio.gather(
                *(self._bus.publish(Envelope.model_validate_json(row.payload)) for row in rows),
                return_exceptions=True,
            )
            done = [row.seq for row, result in zip(rows, results, strict=True) if not isinstance(result, BaseException)]
            failed = [
                (row.seq, result)
                for row, result in zip(rows, results, strict=True)
                if isinstance(result, BaseException)
            ]
            if done:
                await session.execute(update(outbox).where(outbox.c.seq.in_(done)).values(published_at=utcnow()))
            for seq, error in failed:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.seq == seq)
                    .values(attempts=outbox.c.attempts + 1, last_error=repr(error)[:2000])
                )
        if done:
            self._on_published(len(done))
        if failed:
            log.warning("outbox rows not confirmed by the broker; they stay pending", count=len(failed))
        return len(done), not failed

    async def backlog(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(self._outbox).where(self._outbox.c.published_at.is_(None))
            )
        return int(count or 0)


async def prune_messaging_tables(
    sessions: async_sessionmaker[AsyncSession],
    tables: MessagingTables,
    *,
    outbox_older_than: datetime,
    inbox_older_than: datetime,
) -> tuple[int, int]:
    """Delete published outbox rows and processed inbox rows past their keeping time."""
    async with sessions() as session, session.begin():
        published = await session.execute(
            delete(tables.outbox).where(
                tables.outbox.c.published_at.is_not(None), tables.outbox.c.published_at < outbox_older_than
            )
        )
        processed = await session.execute(delete(tables.inbox).where(tables.inbox.c.processed_at < inbox_older_than))
    return int(published.rowcount or 0), int(processed.rowcount or 0)  # type: ignore[attr-defined]


HandlerFn = Callable[[UnitOfWork, Event[Any]], Awaitable[None]]


class Handlers:
    """The events a service consumes and what each does, inside the consumer's transaction."""

    def __init__(self) -> None:
        self._handlers: dict[str, tuple[Contract[Any], HandlerFn]] = {}

    def on(self, contract: Contract[D]) -> Callable[[Callable[[UnitOfWork, Event[D]], Awaitable[None]]], Any]:
        def register(fn: Callable[[UnitOfWork, Event[D]], Awaitable[None]]) -> Any:
            if contract.name in self._handlers:
                raise ValueError(f"{contract.name} already has a handler")
            self._handlers[contract.name] = (contract, fn)  # type: ignore[assignment]
            return fn

        return register

    @property
    def event_types(self) -> set[str]:
        return set(self._handlers)

    def get(self, event_type: str) -> tuple[Contract[Any], HandlerFn] | None:
        return self._handlers.get(event_type)


class Messaging:
    """A service's transactions, outbox and inbox, bound together."""

    def __init__(
        self,
        producer: str,
        sessions: async_sessionmaker[AsyncSession],
        tables: MessagingTables,
        clock: Clock,
        settings: Settings | None = None,
    ) -> None:
        self.producer = producer
        self.sessions = sessions
        self.tables = tables
        self.clock = clock
        self.settings = settings
        self.relay: OutboxRelay | None = None
        sync_class = sessions.kw.get("sync_session_class", Session)
        if not getattr(sync_class, "_imi_private", False):
            # A session class of our own, so the after-commit hook wakes only this service's relay.
            sync_class = type(f"{producer.title()}Session", (sync_class,), {"_imi_private": True})
            sessions.configure(sync_session_class=sync_class)
        event.listen(sync_class, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_STAGED, False) and self.relay is not None:
            self.relay.kick()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that commits business rows and staged events together."""
        async with self.sessions() as session, session.begin():
            yield UnitOfWork(session, self.clock, self.tables, self.producer, self.settings)

    async def process(self, envelope: Envelope, handlers: Handlers) -> bool:
        """Run the handler for ``envelope`` once: False when the inbox shows it already ran."""
        entry = handlers.get(envelope.type)
        correlation = correlation_id_var.set(envelope.correlation_id)
        causation = causation_id_var.set(str(envelope.id))
        try:
            async with self.transaction() as uow:
                inbox = self.tables.inbox
                seen = await uow.session.scalar(select(inbox.c.event_id).where(inbox.c.event_id == envelope.id))
                if seen is not None:
                    log.info("event already handled; acknowledged and skipped", event_id=str(envelope.id))
                    return False
                await uow.session.execute(
                    insert(inbox).values(event_id=envelope.id, event_type=envelope.type, processed_at=utcnow())
                )
                if entry is None:
                    log.warning("no handler for event type; recorded and skipped", event_type=envelope.type)
                    return True
                contract, handler = entry
                await handler(uow, contract.parse(envelope))
            return True
        finally:
            causation_id_var.reset(causation)
            correlation_id_var.reset(correlation)
