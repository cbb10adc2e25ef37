"""The registry service: who is who.

Authorities, coordinators, users and roles, login, and the multilingual directory (rules A1–A5, S1–S15).
"""

from pathlib import Path

from services.registry.directory import on_authority_changed
from services.registry.handlers import handlers
from services.registry.models import messaging, metadata
from services.registry.routes import routers
from services.registry.state import authority_listeners
from services.registry.tokens import LocalTokenVerifier
from services.registry.translation import machine_translation_task
from shared.keys import checked, sealing_public_key, security_code_key, signing_key
from shared.service import ServiceDefinition

# Every change to an authority updates its directory document in the same transaction.
if on_authority_changed not in authority_listeners:
    authority_listeners.append(on_authority_changed)

definition = ServiceDefinition(
    name="registry",
    title="IMI registry",
    description=(
        "Who is who: authorities, coordinators, users and roles, login, "
        "and the multilingual directory (rules A1–A5, S1–S15)."
    ),
    metadata=metadata,
    tables=messaging,
    handlers=handlers,
    migrations=Path(__file__).parent / "migrations",
    routers=routers,
    background=[machine_translation_task],
    verifier_factory=LocalTokenVerifier,
    configuration_checks=[checked(signing_key, sealing_public_key, security_code_key)],
)
