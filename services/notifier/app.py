"""The notifier service: E-mail alerts in each recipient's language, sent exactly once (rules E5, S8, S11)."""

from pathlib import Path

from services.notifier.handlers import handlers
from services.notifier.models import messaging, metadata
from shared.service import ServiceDefinition

definition = ServiceDefinition(
    name="notifier",
    title="IMI notifier",
    description="E-mail alerts in each recipient's language, sent exactly once (rules E5, S8, S11).",
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
)
