"""Events the retention service consumes, each handled once inside its own transaction.

Every request event of the exchange: each carries the request's ``version`` and so tells where the
request stands (drafted, sent, closed, reopened…), which is what a deadline depends on (rule P2).
And the exchange's confirmation that it carried out a purge order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.retention.deadlines import record_request_change, verb_of
from services.retention.purges import record_confirmation
from shared.contracts.exchange import PERSONAL_DATA_PURGED, REQUEST_EVENTS, PersonalDataPurged, RequestChange
from shared.events.envelope import Event
from shared.outbox import Handlers, UnitOfWork

handlers = Handlers()


def _request_handler(verb: str) -> Callable[[UnitOfWork, Event[RequestChange]], Awaitable[None]]:
    async def on_request_change(uow: UnitOfWork, event: Event[RequestChange]) -> None:
        await record_request_change(uow.session, verb, event.data, uow.clock.now())

    on_request_change.__name__ = f"on_request_{verb}"
    return on_request_change


for _contract in REQUEST_EVENTS:
    handlers.on(_contract)(_request_handler(verb_of(_contract.name)))


@handlers.on(PERSONAL_DATA_PURGED)
async def on_personal_data_purged(uow: UnitOfWork, event: Event[PersonalDataPurged]) -> None:
    await record_confirmation(uow, event.data)
