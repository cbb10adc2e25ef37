"""Events the registry consumes: snapshot requests from services rebuilding their read models."""

from services.registry.state import (
    all_authorities,
    all_users,
    authority_state,
    refresh_collections,
    user_state,
)
from shared.contracts import exchange, notifier
from shared.contracts.exchange import SnapshotRequest
from shared.contracts.registry import AUTHORITY_REPUBLISHED, USER_REPUBLISHED
from shared.events.envelope import Event
from shared.outbox import Handlers, UnitOfWork

handlers = Handlers()


@handlers.on(exchange.REGISTRY_SNAPSHOT_REQUESTED)
@handlers.on(notifier.REGISTRY_SNAPSHOT_REQUESTED)
async def republish_everything(uow: UnitOfWork, event: Event[SnapshotRequest]) -> None:
    """Send every authority and user again, with full current state (ARCHITECTURE.md, Read models)."""
    for authority in await all_authorities(uow):
        await refresh_collections(uow, authority)
        await uow.emit(AUTHORITY_REPUBLISHED, authority_state(authority))
    for user in await all_users(uow):
        await uow.emit(USER_REPUBLISHED, user_state(user))
