"""The exchange service: Question sets and the life of a request between two authorities (rules E1–E6, P2–P4)."""

from pathlib import Path

from services.exchange.handlers import handlers
from services.exchange.models import messaging, metadata
from shared.service import ServiceDefinition

definition = ServiceDefinition(
    name="exchange",
    title="IMI exchange",
    description="Question sets and the life of a request between two authorities (rules E1–E6, P2–P4).",
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
)
