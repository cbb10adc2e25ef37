"""The retention service: Deadlines for personal data, purge orders and proof they were carried out (rule P2)."""

from pathlib import Path

from services.retention.deadlines import check_periods
from services.retention.handlers import handlers
from services.retention.models import messaging, metadata
from services.retention.routes import routers
from services.retention.scheduler import purge_scheduler
from shared.service import ServiceDefinition

definition = ServiceDefinition(
    name="retention",
    title="IMI retention",
    description="Deadlines for personal data, purge orders and proof they were carried out (rule P2).",
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
    routers=routers,
    background=[purge_scheduler],
    # Rule P2: a period longer than six months (or not positive) stops the service at start.
    configuration_checks=[check_periods],
)
