"""Machine translation fills in what the Commission's translators have not (rule S1)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.registry.translation import translate_pending
from shared.languages import LANGUAGE_CODES
from shared.translation import HttpMachineTranslator
from tests.registry.world import UserIdTokens, World, build_world


def registry_verifier(_settings):  # type: ignore[no-untyped-def]
    return UserIdTokens()


@pytest.fixture
async def world(registry) -> World:
    return await build_world(registry)


def libretranslate() -> tuple[FastAPI, list[dict]]:
    """A LibreTranslate-compatible service on the other side of real HTTP requests."""
    app, calls = FastAPI(), []

    @app.post("/translate")
    async def translate(body: dict) -> dict:
        calls.append(body)
        return {"translatedText": [f"[{body['target']}] {text}" for text in body["q"]]}

    return app, calls


async def test_missing_and_outdated_translations_are_filled_in_by_machine_and_marked_so(world):
    service, calls = libretranslate()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=service), base_url="http://mt")
    translator = HttpMachineTranslator("http://mt", api_key="k", client=client)
    college = world.authorities["college"]
    await world.call(
        "PUT",
        f"/authorities/{college}/translations/en",
        "commission",
        json={"informal_name": "Regional college of physicians of Cluj"},
    )

    assert await translate_pending(world.registry.runtime.messaging, translator, batch=100) >= 1
    shown = (await world.call("GET", f"/authorities/{college}?lang=fi", "ie_coordinator")).json()
    assert shown["shown"]["status"] == "machine"
    assert shown["shown"]["informal_name"] == "[fi] Colegiul regional al medicilor din Cluj"
    english = (await world.call("GET", f"/authorities/{college}?lang=en", "ie_coordinator")).json()["shown"]
    assert english == {
        "language": "en",
        "informal_name": "Regional college of physicians of Cluj",
        "profile": "",
        "status": "current",
    }  # a translator's work is never overwritten
    statuses = {t["language"]: t["status"] for t in shown["translations"]}
    assert statuses == {lang: "machine" for lang in LANGUAGE_CODES - {"ro", "en"}} | {"en": "current"}
    assert all(c["api_key"] == "k" for c in calls)

    calls.clear()
    assert await translate_pending(world.registry.runtime.messaging, translator, batch=100) == 0
    assert calls == []  # nothing left to translate until the original changes


async def test_without_a_translation_service_the_background_task_does_nothing(registry):
    from services.registry.translation import machine_translation_task

    assert registry.runtime.settings.machine_translation_url is None
    await machine_translation_task(registry.runtime)  # returns at once
