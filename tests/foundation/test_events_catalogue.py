"""Event contracts: names follow <producer>.<entity>.<verb>.v<major>, and the AsyncAPI catalogue
in the repository is generated from them (ARCHITECTURE.md, Events)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services import load_definition
from services.cli import app
from shared.events.catalogue import build_catalogue, render_catalogue
from shared.events.envelope import Contract, Envelope, EventData
from shared.settings import SERVICES

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "events" / "asyncapi.yaml"


def consumers() -> dict[str, set[str]]:
    return {name: load_definition(name).handlers.event_types for name in SERVICES}


def test_the_committed_event_catalogue_is_up_to_date():
    assert CATALOGUE.read_text() == render_catalogue(consumers()), "run `imi events catalogue`"


def test_the_catalogue_check_command_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text("asyncapi: 3.0.0\n")
    result = CliRunner().invoke(app, ["events", "catalogue", "--check", "--output", str(stale)])
    assert result.exit_code == 1
    assert "stale" in result.output


def test_the_catalogue_is_asyncapi_3_with_a_channel_per_contract():
    document = yaml.safe_load(render_catalogue(consumers()))
    assert document["asyncapi"] == "3.0.0"
    names = {c.name for c in Contract.registry.values()}
    assert {channel["address"] for channel in document["channels"].values()} == names
    assert "Envelope" in document["components"]["schemas"]


class Thing(EventData):
    name: str


@pytest.mark.parametrize(
    "name",
    ["exchange.request.sent", "Exchange.request.sent.v1", "nobody.request.sent.v1", "exchange.request.sent.v0"],
)
def test_a_contract_name_must_be_producer_entity_verb_major_version(name):
    with pytest.raises(ValueError, match="producer"):
        Contract(name, Thing, "bad", register=False)


def test_consumers_ignore_fields_they_do_not_know():
    contract = Contract("exchange.thing.done.v1", Thing, "test", register=False)
    envelope = Envelope.model_validate(
        {
            "type": "exchange.thing.done.v1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "producer": "exchange",
            "correlation_id": "c",
            "data": {"name": "n", "added_later": 1},
            "added_later_too": True,
        }
    )
    assert contract.parse(envelope).data == Thing(name="n")


def test_the_catalogue_names_who_sends_and_who_receives_each_event():
    contract = Contract("retention.thing.done.v1", Thing, "a thing was done")
    try:
        document = build_catalogue({"notifier": {contract.name}, "exchange": set()})
    finally:
        del Contract.registry[contract.name]
    operations = document["operations"]
    assert operations["retention_sends_retention_thing_done_v1"]["action"] == "send"
    assert operations["notifier_receives_retention_thing_done_v1"]["action"] == "receive"
    assert "exchange_receives_retention_thing_done_v1" not in operations
    message = document["components"]["messages"]["retention_thing_done_v1"]
    assert message["summary"] == "a thing was done"
    assert document["components"]["schemas"]["Thing"]["required"] == ["name"]


def test_the_committed_openapi_documents_are_up_to_date():
    result = CliRunner().invoke(app, ["openapi", "--check", "--output", str(CATALOGUE.parents[1] / "api")])
    assert result.exit_code == 0, result.output
