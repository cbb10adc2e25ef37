"""Each reader in their own language (rule E1): question texts and options come pre-translated; free
text (messages and free-text answers) is shown as written, with a machine translation beside it
when the reader asks and a translation service is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.exchange import routes
from services.exchange.question_sets import common_labels, question_set
from shared.settings import Settings
from tests.exchange.world import PQ, ExchangeWorld, exchange_world

QUESTIONS = ["pq.diploma.level", "pq.sanctions.any", "pq.sanctions.details"]


class FakeTranslator:
    """A machine-translation service: marks each text with the target language, or fails."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.calls: list[tuple[list[str], str, str]] = []
        self.failure = failure

    async def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        self.calls.append((texts, source, target))
        if self.failure is not None:
            raise self.failure
        return [f"[{source}->{target}] {text}" for text in texts]


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[ExchangeWorld]:
    async with exchange_world(Settings(data_dir=tmp_path)) as made:
        yield made


def use(monkeypatch: pytest.MonkeyPatch, translator: FakeTranslator) -> None:
    @asynccontextmanager
    async def configured(_settings: object) -> AsyncIterator[FakeTranslator]:
        yield translator

    monkeypatch.setattr(routes, "configured_translator", configured)


async def answered(world: ExchangeWorld) -> str:
    """An English request, answered in Romanian with a free-text answer."""
    request_id = await world.accepted_request(question_ids=QUESTIONS)
    level = question_set(PQ).question("pq.diploma.level").options[0].id
    answers = {"pq.diploma.level": level, "pq.sanctions.any": "no", "pq.sanctions.details": "Nicio sancțiune."}
    response = await world.call("PUT", f"/requests/{request_id}/answers", "ro_handler", json={"answers": answers})
    assert response.status_code == 200, response.text
    return request_id


async def test_questions_options_and_fixed_answers_are_in_the_readers_language_rule_e1(world):
    request_id = await answered(world)
    qs = question_set(PQ)
    for who, language in (("ie_handler", "en"), ("ro_handler", "ro")):
        body = (await world.call("GET", f"/requests/{request_id}", who)).json()
        level, sanctions, _ = body["questions"]
        assert [q["text"] for q in body["questions"]] == [qs.question(q).text_in(language) for q in QUESTIONS]
        assert level["options"] == {o.id: o.label_in(language) for o in qs.question("pq.diploma.level").options}
        assert level["answer_label"] == qs.question("pq.diploma.level").options[0].label_in(language)
        assert sanctions["answer_label"] == common_labels().label_in("no", language)
    finnish = (await world.call("GET", f"/requests/{request_id}?lang=fi", "ie_handler")).json()
    assert finnish["questions"][1]["text"] == qs.question("pq.sanctions.any").text_in("fi")
    unknown = await world.call("GET", f"/requests/{request_id}?lang=xx", "ie_handler")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_language"


async def test_free_text_is_shown_as_written_with_a_machine_translation_beside_it_rule_e1(world, monkeypatch):
    translator = FakeTranslator()
    use(monkeypatch, translator)
    request_id = await answered(world)
    english = (await world.call("GET", f"/requests/{request_id}?translate_free_text=true", "ie_handler")).json()
    details = english["questions"][2]
    assert details["answer"] == "Nicio sancțiune." and details["answer_language"] == "ro"
    assert details["answer_translation"] == "[ro->en] Nicio sancțiune."
    assert english["questions"][0]["answer_translation"] is None  # a choice is translated by the set, not a machine
    [message] = english["messages"]
    assert message["language"] == "en" and message["translation"] is None  # already in the reader's language
    assert translator.calls == [(["Nicio sancțiune."], "ro", "en")]

    romanian = (await world.call("GET", f"/requests/{request_id}?translate_free_text=true", "ro_handler")).json()
    [message] = romanian["messages"]
    assert message["text"] == "Please check the diploma of this doctor."
    assert message["translation"] == "[en->ro] Please check the diploma of this doctor."
    assert romanian["questions"][2]["answer_translation"] is None  # written in Romanian


async def test_free_text_is_not_sent_for_translation_unless_the_reader_asks_rule_e1(world, monkeypatch):
    translator = FakeTranslator()
    use(monkeypatch, translator)
    request_id = await answered(world)
    body = (await world.call("GET", f"/requests/{request_id}", "ie_handler")).json()
    assert body["questions"][2]["answer_translation"] is None
    assert translator.calls == []


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("no route to the translation service"), ValueError("a different number of texts")],
)
async def test_a_failing_translation_service_leaves_free_text_as_written_rule_e1(world, monkeypatch, failure):
    use(monkeypatch, FakeTranslator(failure))
    request_id = await answered(world)
    response = await world.call("GET", f"/requests/{request_id}?translate_free_text=true", "ie_handler")
    assert response.status_code == 200, response.text
    assert response.json()["questions"][2] == {
        **response.json()["questions"][2],
        "answer": "Nicio sancțiune.",
        "answer_translation": None,
    }


async def test_without_a_configured_translation_service_free_text_stays_as_written(world):
    assert world.runtime.settings.machine_translation_url is None
    request_id = await answered(world)
    response = await world.call("GET", f"/requests/{request_id}?translate_free_text=true", "ie_handler")
    assert response.status_code == 200
    assert response.json()["questions"][2]["answer_translation"] is None
