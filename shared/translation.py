"""Machine translation behind an interface, for texts written by people: informal names and
profiles in the registry (rule S1), free text in the exchange. A LibreTranslate-compatible HTTP
service when ``IMI_MACHINE_TRANSLATION_URL`` is set; none otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import httpx

from shared.settings import Settings


class MachineTranslator(Protocol):
    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """``texts`` from ``source`` into ``target``, in the same order."""
        ...


class HttpMachineTranslator:
    """A LibreTranslate-compatible service: ``POST {url}/translate`` with ``q`` as a list."""

    def __init__(self, url: str, *, api_key: str | None = None, client: httpx.AsyncClient | None = None) -> None:
        self._url = url.rstrip("/") + "/translate"
        self._api_key = api_key
        self._client = client or httpx.AsyncClient(timeout=30)

    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        body: dict[str, object] = {"q": texts, "source": source, "target": target, "format": "text"}
        if self._api_key:
            body["api_key"] = self._api_key
        response = await self._client.post(self._url, json=body)
        response.raise_for_status()
        translated = response.json()["translatedText"]
        if not isinstance(translated, list) or len(translated) != len(texts):
            raise ValueError("the translation service answered a different number of texts")
        return [str(t) for t in translated]


@asynccontextmanager
async def configured_translator(settings: Settings) -> AsyncIterator[MachineTranslator | None]:
    """The configured translation service (None when ``IMI_MACHINE_TRANSLATION_URL`` is unset),
    its connections closed when the block ends."""
    if settings.machine_translation_url is None:
        yield None
        return
    async with httpx.AsyncClient(timeout=30) as client:
        yield HttpMachineTranslator(
            settings.machine_translation_url, api_key=settings.machine_translation_api_key, client=client
        )
