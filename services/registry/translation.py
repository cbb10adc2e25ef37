"""Machine translation of informal names and profiles (rule S1), behind an interface.

The Commission's translators provide translations through the API (rule A3). Where a machine-
translation service is configured (``IMI_MACHINE_TRANSLATION_URL``, a LibreTranslate-compatible
``POST /translate``), languages that have no translation, or whose translation is outdated, are
filled in by machine and marked ``machine`` until a translator reviews them. None configured means
none is used: untranslated languages show the original, marked as such.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from services.registry.authorities import store_translation
from services.registry.models import Authority, AuthorityStatus, TranslationStatus
from services.registry.schemas import TranslationIn
from services.registry.state import authority_changed
from shared.contracts.registry import AUTHORITY_UPDATED
from shared.languages import LANGUAGE_CODES
from shared.logging import get_logger
from shared.outbox import Messaging
from shared.service import ServiceRuntime
from shared.translation import MachineTranslator, configured_translator

log = get_logger(__name__)


def _needs_machine(authority: Authority) -> list[str]:
    """Languages with no translation, or an outdated or machine one whose original moved on."""
    have = {t.language: t.status for t in authority.translations}
    return sorted(
        language
        for language in LANGUAGE_CODES - {authority.language}
        if have.get(language) in (None, TranslationStatus.outdated)
    )


async def translate_pending(messaging: Messaging, translator: MachineTranslator, *, batch: int = 20) -> int:
    """Fill in machine translations for up to ``batch`` authorities; each in its own transaction."""
    async with messaging.sessions() as session:
        ids = list(
            (
                await session.scalars(
                    select(Authority.id)
                    .where(Authority.status == AuthorityStatus.active)
                    .order_by(Authority.updated_at)
                )
            ).all()
        )
    done = 0
    for authority_id in ids:
        if done >= batch:
            break
        async with messaging.transaction() as uow:
            # Replicas each run this task: a row another one holds is left to it.
            authority = await uow.session.scalar(
                select(Authority).where(Authority.id == authority_id).with_for_update(skip_locked=True)
            )
            if authority is None:
                continue
            languages = _needs_machine(authority)
            if not languages:
                continue
            for language in languages:
                name, profile = await translator.translate(
                    [authority.informal_name, authority.profile or " "], authority.language, language
                )
                await store_translation(
                    uow,
                    authority,
                    language,
                    TranslationIn(informal_name=name.strip()[:500] or authority.informal_name, profile=profile.strip()),
                    status=TranslationStatus.machine,
                    by="machine",
                )
            await authority_changed(
                uow,
                authority,
                AUTHORITY_UPDATED,
                actor=None,
                action="machine_translated",
                changes={"languages": languages},
            )
            done += 1
    return done


async def run_machine_translation(messaging: Messaging, translator: MachineTranslator, interval: float) -> None:
    """Background loop of the registry when a translation service is configured."""
    while True:
        try:
            await translate_pending(messaging, translator)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("machine translation pass failed; will retry", error=repr(exc))
        await asyncio.sleep(interval)


async def machine_translation_task(runtime: ServiceRuntime) -> None:
    """The registry's background task: runs only when a translation service is configured."""
    async with configured_translator(runtime.settings) as translator:
        if translator is None:
            return
        await run_machine_translation(runtime.messaging, translator, runtime.settings.machine_translation_interval)
