"""The notifier service: E-mail alerts in each recipient's language, sent exactly once (rules E5, S8, S11)."""

import asyncio
from pathlib import Path

from services.notifier.digest import compose_digests_daily
from services.notifier.handlers import handlers
from services.notifier.models import messaging, metadata
from services.notifier.pruning import prune_deliveries_periodically
from services.notifier.read_model import request_snapshot_when_empty
from services.notifier.routes import router
from services.notifier.sender import deliver_mail
from services.notifier.settings import NotifierSettings
from shared.logging import get_logger
from shared.service import ServiceDefinition, ServiceRuntime

log = get_logger(__name__)

SNAPSHOT_RETRY = 5.0

# A bad IMI_NOTIFIER_… value stops the service as it starts, not silently at its first e-mail.
NotifierSettings()


async def ask_for_snapshot(runtime: ServiceRuntime) -> None:
    """On start with an empty read model, ask the registry once to republish its state."""
    while True:
        try:
            await request_snapshot_when_empty(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not ask the registry for a snapshot; will retry", error=repr(exc))
        await asyncio.sleep(SNAPSHOT_RETRY)


definition = ServiceDefinition(
    name="notifier",
    title="IMI notifier",
    description="E-mail alerts in each recipient's language, sent exactly once (rules E5, S8, S11).",
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    background=[ask_for_snapshot, deliver_mail, compose_digests_daily, prune_deliveries_periodically],
)
