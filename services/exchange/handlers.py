"""Events the exchange consumes: the registry's state (its read model) and retention's purge orders."""

from services.exchange.purge import RetentionPeriods, purge_requests
from services.exchange.read_model import upsert_authority, upsert_user
from shared.contracts.registry import AUTHORITY_STATE_EVENTS, USER_STATE_EVENTS, AuthorityState, UserState
from shared.contracts.retention import PURGE_ORDERED, PurgeOrder
from shared.events.envelope import Event
from shared.outbox import Handlers, UnitOfWork

handlers = Handlers()


async def _authority(uow: UnitOfWork, event: Event[AuthorityState]) -> None:
    await upsert_authority(uow, event.data)


async def _user(uow: UnitOfWork, event: Event[UserState]) -> None:
    await upsert_user(uow, event.data)


for _contract in AUTHORITY_STATE_EVENTS:
    handlers.on(_contract)(_authority)
for _user_contract in USER_STATE_EVENTS:
    handlers.on(_user_contract)(_user)


@handlers.on(PURGE_ORDERED)
async def carry_out_purge(uow: UnitOfWork, event: Event[PurgeOrder]) -> None:
    """Rule P2: delete the personal data of the ordered requests that are due and confirm each; a
    request reopened meanwhile keeps its data and is confirmed as not purged."""
    await purge_requests(uow, event.data, RetentionPeriods.of(uow.settings))
