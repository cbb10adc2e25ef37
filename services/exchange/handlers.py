"""Events the exchange service consumes, each handled once inside its own transaction."""

from shared.outbox import Handlers

handlers = Handlers()
