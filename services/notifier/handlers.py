"""Events the notifier service consumes, each handled once inside its own transaction."""

from shared.outbox import Handlers

handlers = Handlers()
