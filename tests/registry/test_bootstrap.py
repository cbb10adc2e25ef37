"""`imi registry bootstrap`: the Commission's helpdesk and the national coordinators with their first
users (rules A2, A3, S9, S11), as an operator runs it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.registry import reference


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("IMI_REGISTRY_DATABASE_URL", "IMI_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMI_DATA_DIR", str(tmp_path))
    return tmp_path


def bootstrap(*coordinators: str) -> tuple[int, str]:
    arguments = ["registry", "bootstrap", "--commission-email", "helpdesk@ec.example.eu"]
    for coordinator in coordinators:
        arguments += ["--coordinator", coordinator]
    result = CliRunner().invoke(app, arguments)
    return result.exit_code, result.output


AUTHORITIES = "SELECT kind, country, official_name, status FROM authorities"


def rows(data_dir: Path, query: str) -> list[tuple]:
    with sqlite3.connect(data_dir / "registry.db") as connection:
        return connection.execute(query).fetchall()


def test_bootstrap_creates_the_helpdesk_and_one_national_coordinator_per_country_rules_a2_a3_s9_s11(data_dir):
    code, output = bootstrap("RO=coord@anpc.example.ro", "IE=imi@gov.example.ie=Department of Enterprise")
    assert code == 0, output
    authorities = {
        (kind, country): (name, status)
        for kind, country, name, status in rows(
            data_dir, "SELECT kind, country, official_name, status FROM authorities"
        )
    }
    assert set(authorities) == {("commission", "BE"), ("national_coordinator", "RO"), ("national_coordinator", "IE")}
    assert all(status == "active" for _, status in authorities.values())
    assert authorities[("national_coordinator", "IE")][0] == "Department of Enterprise"
    # The name is in the country's own language when none is given.
    assert authorities[("national_coordinator", "RO")][0] == "National IMI coordinator – România"

    # Each first user has every right; a coordinator's is its data administrator in every area (S9, S13).
    areas = {area.code for area in reference.legislative_areas()}
    roles = rows(
        data_dir,
        "SELECT u.username, r.role, r.area FROM users u JOIN user_roles r ON r.user_id = u.id "
        "JOIN authorities a ON a.id = u.authority_id WHERE a.country = 'RO'",
    )
    assert {area for _, role, area in roles if role == "data_administrator"} == areas
    assert ("local_data_administrator", None) in {(role, area) for _, role, area in roles}

    # The user names are printed for the operator to hand over in person, and never e-mailed (S11).
    usernames = {username for (username,) in rows(data_dir, "SELECT username FROM users")}
    assert len(usernames) == 3
    assert all(f"user name: {username}" in output for username in usernames)
    payloads = [json.loads(payload) for (payload,) in rows(data_dir, "SELECT payload FROM outbox")]
    assert not any(username in json.dumps(payload) for payload in payloads for username in usernames)
    issued = [p for p in payloads if p["type"] == "registry.user.temporary_password_issued.v1"]
    assert len(issued) == 3

    again_code, again = bootstrap("RO=someone.else@anpc.example.ro")
    assert again_code == 0, again
    assert "nothing to create" in again
    assert len(rows(data_dir, "SELECT id FROM authorities")) == 3


@pytest.mark.parametrize(
    ("coordinator", "message"),
    [("US=imi@example.com", "unknown_country"), ("RO", "is not COUNTRY=EMAIL")],
)
def test_bootstrap_refuses_bad_input_and_writes_nothing_rule_a5(data_dir, coordinator, message):
    code, output = bootstrap(coordinator)
    assert code == 2
    assert message in output
    database = data_dir / "registry.db"
    assert not database.exists() or rows(data_dir, "SELECT id FROM authorities") == []


def test_bootstrap_takes_the_country_option_as_the_issue_writes_it_rule_a2(data_dir):
    """`imi registry bootstrap --country RO=…` is the same as `--coordinator RO=…`."""
    arguments = ["registry", "bootstrap", "--commission-email", "helpdesk@ec.example.eu"]
    countries = ["--country", "RO=coord@anpc.example.ro", "--country", "IE=imi@gov.example.ie"]
    result = CliRunner().invoke(app, [*arguments, *countries])
    assert result.exit_code == 0, result.output
    kinds = {(kind, country) for kind, country, _, _ in rows(data_dir, AUTHORITIES)}
    assert kinds == {("commission", "BE"), ("national_coordinator", "RO"), ("national_coordinator", "IE")}
