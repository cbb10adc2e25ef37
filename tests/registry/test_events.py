"""The registry's state events carry the full current state of every authority and user, and the
snapshot republish sends the same (issue #3 item 8; ARCHITECTURE.md, Read models): every field the
registry keeps about an authority, its translations, contacts, keywords, areas, links, request
coordinators (S5) and coordinator settings (S14, S15), and about a user (S10) and their roles (S9),
compared field by field with the registry's own rows. Never credentials, never the user name (S11).

The comparison walks the registry's tables, so a column or table added to the models but not to
the events fails here until it is carried or listed below with the reason it stays out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Table, select
from sqlalchemy.orm import Mapper

from services.registry.models import Authority, Credentials, User, metadata
from shared.contracts.exchange import REGISTRY_SNAPSHOT_REQUESTED, SnapshotRequest
from shared.contracts.registry import (
    AUTHORITY_REPUBLISHED,
    AUTHORITY_STATE_EVENTS,
    USER_REPUBLISHED,
    USER_STATE_EVENTS,
    AuthorityState,
    UserState,
)
from shared.events.envelope import Envelope
from shared.outbox import utcnow
from tests.registry.world import PQ, SERVICES_AREA, UserIdTokens, World, build_world, college
from tests.support import tables


def registry_verifier(_settings):  # type: ignore[no-untyped-def]
    return UserIdTokens()


@pytest.fixture
async def world(registry) -> World:
    return await build_world(registry)


# Columns kept out of the state events on purpose, with the reason.
NOT_CARRIED_COLUMNS = {
    ("users", "username"): "rule S11: the user name is told in person and never e-mailed, so it is in no event",
    ("user_roles", "id"): "a surrogate key: a role is identified by (role, area)",
}
# Relationships kept out of the state events on purpose.
NOT_CARRIED_RELATIONSHIPS = {
    ("users", "credentials"): "password hash, security code, failed attempts: credentials never leave the registry",
}
# Tables referring to an authority or user that are not part of its state.
NOT_CARRIED_TABLES = {
    "credentials": "credentials (ARCHITECTURE.md, Identity and access)",
    "login_challenges": "a login in progress: credentials",
    "refresh_tokens": "token hashes: credentials",
    "invitations": "an invitation's token hash is a credential; the registration it leads to is an event",
    "directory_documents": "the registry's own search index, derived from the state",
}
# Column -> event field where the names differ.
RENAMED = {
    ("authorities", "registered_by_id"): "registered_by",
    ("authorities", "validated_by_id"): "validated_by",
    ("authority_areas", "granted_by_id"): "granted_by",
}
# Relationship -> the event field carrying its rows.
AUTHORITY_CHILDREN = {
    "translations": "translations",
    "emails": "emails",
    "languages": "languages",
    "keywords": "keywords",
    "areas": "area_grants",
    "links": "link_details",
    "request_coordinators": "request_coordinators",
    "coordinator_settings": "coordinator_settings",
}
USER_CHILDREN = {"roles": "roles"}
# Event fields repeating a child in short form for older consumers: relationship -> (field, column).
SHORT_FORMS = {"areas": ("areas", "area"), "links": ("links", "linked_authority_id")}

CREDENTIAL_FIELDS = {c.name for c in Credentials.__table__.columns} - {"user_id"} | {
    "username",
    "token_hash",
    "temporary_password",
    "password",
}


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def _table(mapper: Mapper[Any]) -> Table:
    table = mapper.local_table
    assert isinstance(table, Table)
    return table


def _carried_columns(table: Table, skip: Collection[str] = ()) -> list[str]:
    return [c.name for c in table.columns if c.name not in skip and (table.name, c.name) not in NOT_CARRIED_COLUMNS]


def _child_columns(mapper: Mapper[Any], relationship: str) -> tuple[Table, list[str]]:
    """The child table of ``relationship`` and the columns an event carries of it: all but the key
    to the parent and those listed as not carried."""
    prop = mapper.relationships[relationship]
    table = _table(prop.mapper)
    parent_keys = {remote.name for _, remote in prop.local_remote_pairs}
    return table, _carried_columns(table, parent_keys)


def _child_rows(mapper: Mapper[Any], relationship: str, parent: object) -> list[dict[str, Any]]:
    """The rows of ``relationship`` as the event should carry them, under their event names."""
    table, columns = _child_columns(mapper, relationship)
    return [
        {RENAMED.get((table.name, column), column): getattr(child, column) for column in columns}
        for child in getattr(parent, relationship)
    ]


def _event_rows(value: Any, columns: list[str]) -> list[dict[str, Any]]:
    """An event field holding child rows, as rows: a list of objects, a list of single values
    (e-mails, languages) or a mapping of list to codes (keywords)."""
    if isinstance(value, dict):
        first, second = columns
        return [{first: key, second: item} for key, items in value.items() for item in items]
    return [item.model_dump() if isinstance(item, BaseModel) else {columns[0]: item} for item in value]


def assert_carries_the_row(state: BaseModel, row: object, children: dict[str, str]) -> None:
    """Every carried column of ``row`` and of its child rows equals the event's field, and the event
    has no field the row does not explain."""
    mapper: Mapper[Any] = type(row).__mapper__  # type: ignore[attr-defined]
    table = _table(mapper)
    explained: set[str] = set()
    for column in _carried_columns(table):
        field = RENAMED.get((table.name, column), column)
        assert field in type(state).model_fields, f"{table.name}.{column} is not carried by {type(state).__name__}"
        assert getattr(state, field) == getattr(row, column), f"{field}: event and registry differ"
        explained.add(field)
    relationships = set(mapper.relationships.keys())
    not_carried = {name for t, name in NOT_CARRIED_RELATIONSHIPS if t == table.name}
    assert relationships - not_carried == set(children), f"a relationship of {table.name} is not carried"
    for relationship, field in children.items():
        expected = _child_rows(mapper, relationship, row)
        child_table, child_columns = _child_columns(mapper, relationship)
        columns = [RENAMED.get((child_table.name, c), c) for c in child_columns]
        actual = _event_rows(getattr(state, field), columns)
        assert _sorted(actual) == _sorted(expected), f"{field}: event and registry differ"
        explained.add(field)
        if relationship in SHORT_FORMS:
            short, column = SHORT_FORMS[relationship]
            assert sorted(getattr(state, short), key=str) == sorted((r[column] for r in expected), key=str)
            explained.add(short)
    assert set(type(state).model_fields) == explained, "the event has a field the registry does not keep"


async def _latest_states(world: World, names: set[str]) -> dict[str, dict[str, Any]]:
    """The data of the newest event among ``names`` for each entity id."""
    async with world.registry.runtime.sessions() as session:
        rows = await session.execute(
            select(tables.outbox.c.event_type, tables.outbox.c.payload).order_by(tables.outbox.c.seq)
        )
        latest: dict[str, dict[str, Any]] = {}
        for event_type, payload in rows.all():
            if event_type in names:
                data = json.loads(payload)["data"]
                latest[data["id"]] = data
    return latest


async def _everything(world: World) -> tuple[list[Authority], list[User]]:
    async with world.registry.runtime.sessions() as session:
        authorities = list((await session.scalars(select(Authority))).all())
        users = list((await session.scalars(select(User))).all())
    return authorities, users


async def _change_everything(world: World) -> None:
    """Give the world's authorities and users a value in every field the registry keeps, each at
    its own time, so that a field taken from the wrong column would differ."""
    clock = world.registry.clock
    college_id = world.authorities["college"]
    steps: list[tuple[str, str, str, dict[str, Any]]] = [
        (
            "PATCH",
            f"/authorities/{college_id}",
            "college_first_user",
            {"address": "Str. Republicii 2, Cluj-Napoca", "phone": "+40 264 222 222", "website": "https://cm.ro"},
        ),
        (
            "PUT",
            f"/authorities/{college_id}/translations/en",
            "commission",
            {"informal_name": "Regional college of physicians of Cluj", "profile": "Recognition of doctors."},
        ),
        (
            "POST",
            f"/authorities/{college_id}/links",
            "college_first_user",
            {"linked_authority_id": world.authorities["national_college"]},
        ),
        ("POST", f"/authorities/{college_id}/areas", "ro_coordinator", {"area": SERVICES_AREA}),
        (
            "PUT",
            f"/coordinators/{world.authorities['ro_coordinator']}/settings/{PQ}",
            "ro_coordinator",
            {"referral": "no", "approve_requests": True, "approve_replies": False},
        ),
        ("PATCH", f"/users/{world.ids['handler']}", "handler", {"phone": "+40 264 333 333", "digest": True}),
        ("POST", f"/users/{world.ids['basic']}/deactivate", "college_first_user", {}),
    ]
    for method, url, who, body in steps:
        clock.travel(timedelta(minutes=7))
        response = await world.call(method, url, who, json=body or None)
        assert response.status_code == 200, (url, response.text)
    clock.travel(timedelta(minutes=7))
    cluj = await world.call(
        "POST", "/authorities", "ro_coordinator", json=college("Coordonatorul IMI Cluj", kind="delegated_coordinator")
    )
    assert cluj.status_code == 201, cluj.text
    cluj_id = cluj.json()["authority"]["id"]
    clock.travel(timedelta(minutes=7))
    assert (await world.call("POST", f"/authorities/{cluj_id}/validate", "ro_coordinator")).status_code == 200
    clock.travel(timedelta(minutes=7))
    full_view = await world.call(
        "PUT",
        f"/authorities/{college_id}/request-coordinators",
        "college_first_user",
        json={"area": PQ, "coordinator_id": cluj_id, "full_view": True},
    )
    assert full_view.status_code == 200, full_view.text


async def _request_snapshot(world: World) -> None:
    envelope = Envelope(
        type=REGISTRY_SNAPSHOT_REQUESTED.name,
        occurred_at=utcnow(),
        producer="exchange",
        correlation_id="snapshot",
        data=SnapshotRequest(reason="read model starts empty").model_dump(),
    )
    runtime = world.registry.runtime
    assert await runtime.messaging.process(envelope, runtime.definition.handlers)


async def test_state_events_carry_every_field_the_registry_keeps_about_authorities_and_users_issue_3(world):
    await _change_everything(world)
    authorities, users = await _everything(world)
    latest_authorities = await _latest_states(world, {c.name for c in AUTHORITY_STATE_EVENTS})
    latest_users = await _latest_states(world, {c.name for c in USER_STATE_EVENTS})
    assert set(latest_authorities) == {str(a.id) for a in authorities}
    assert set(latest_users) == {str(u.id) for u in users}
    for authority in authorities:
        assert_carries_the_row(
            AuthorityState.model_validate(latest_authorities[str(authority.id)]), authority, AUTHORITY_CHILDREN
        )
    for user in users:
        assert_carries_the_row(UserState.model_validate(latest_users[str(user.id)]), user, USER_CHILDREN)

    # The fields the audit found missing, by value (rules S1, S10).
    college_state = latest_authorities[world.authorities["college"]]
    assert college_state["address"] == "Str. Republicii 2, Cluj-Napoca"
    assert college_state["phone"] == "+40 264 222 222"
    assert college_state["website"] == "https://cm.ro"
    assert college_state["validated_by"] == world.authorities["ro_coordinator"]
    # The registry stores the translator's id in hex (or "machine"); the event carries it as stored.
    assert [uuid.UUID(t["translated_by"]) for t in college_state["translations"]] == [
        uuid.UUID(world.ids["commission"])
    ]
    assert {g["area"]: g["granted_by"] for g in college_state["area_grants"]} == {
        PQ: world.authorities["ro_coordinator"],
        SERVICES_AREA: world.authorities["ro_coordinator"],
    }
    assert [d["linked_authority_id"] for d in college_state["link_details"]] == [world.authorities["national_college"]]
    assert latest_users[world.ids["handler"]]["phone"] == "+40 264 333 333"


async def test_the_snapshot_republishes_the_same_full_state_as_the_latest_events_issue_3(world):
    await _change_everything(world)
    latest_authorities = await _latest_states(world, {c.name for c in AUTHORITY_STATE_EVENTS})
    latest_users = await _latest_states(world, {c.name for c in USER_STATE_EVENTS})
    await _request_snapshot(world)
    republished_authorities = await _latest_states(world, {AUTHORITY_REPUBLISHED.name})
    republished_users = await _latest_states(world, {USER_REPUBLISHED.name})
    assert republished_authorities == latest_authorities
    assert republished_users == latest_users
    authorities, users = await _everything(world)
    for authority in authorities:
        assert_carries_the_row(
            AuthorityState.model_validate(republished_authorities[str(authority.id)]), authority, AUTHORITY_CHILDREN
        )
    for user in users:
        assert_carries_the_row(UserState.model_validate(republished_users[str(user.id)]), user, USER_CHILDREN)


async def test_a_field_missing_from_the_event_or_differing_from_the_row_is_noticed(world):
    """The comparison above can fail: an event without the user's phone, or with an authority's
    old address, does not pass."""
    authorities, users = await _everything(world)
    latest_users = await _latest_states(world, {c.name for c in USER_STATE_EVENTS})
    latest_authorities = await _latest_states(world, {c.name for c in AUTHORITY_STATE_EVENTS})
    user = next(u for u in users if str(u.id) == world.ids["handler"])
    authority = next(a for a in authorities if str(a.id) == world.authorities["college"])
    user_state = UserState.model_validate(latest_users[str(user.id)])
    authority_state = AuthorityState.model_validate(latest_authorities[str(authority.id)])
    assert_carries_the_row(user_state, user, USER_CHILDREN)
    assert_carries_the_row(authority_state, authority, AUTHORITY_CHILDREN)

    without_phone = UserState.model_validate({k: v for k, v in latest_users[str(user.id)].items() if k != "phone"})
    with pytest.raises(AssertionError, match="phone"):
        assert_carries_the_row(without_phone, user, USER_CHILDREN)
    old_address = authority_state.model_copy(update={"address": "elsewhere"})
    with pytest.raises(AssertionError, match="address"):
        assert_carries_the_row(old_address, authority, AUTHORITY_CHILDREN)
    no_grants = authority_state.model_copy(update={"area_grants": []})
    with pytest.raises(AssertionError, match="area_grants"):
        assert_carries_the_row(no_grants, authority, AUTHORITY_CHILDREN)


def test_every_table_about_an_authority_or_user_is_carried_or_kept_out_for_a_reason():
    """A new table referring to an authority or user must reach the events or be listed with its reason."""
    carried = {"authorities", "users"} | {
        _table(mapper.relationships[name].mapper).name
        for mapper, children in ((Authority.__mapper__, AUTHORITY_CHILDREN), (User.__mapper__, USER_CHILDREN))
        for name in children
    }
    referring = {
        table.name
        for table in metadata.sorted_tables
        for key in table.foreign_keys
        if key.column.table.name in {"authorities", "users"}
    }
    assert {_table(Authority.__mapper__).name, _table(User.__mapper__).name} == {"authorities", "users"}
    assert referring - carried == set(NOT_CARRIED_TABLES)


async def test_no_event_carries_a_credential_or_a_user_name_rule_s11(world):
    """Rule S11 and ARCHITECTURE.md, Identity and access: the user name, password hashes, security
    codes and tokens stay in the registry; the temporary password travels only sealed."""
    await _change_everything(world)
    await _request_snapshot(world)
    async with world.registry.runtime.sessions() as session:
        payloads = [json.loads(p) for p in (await session.scalars(select(tables.outbox.c.payload))).all()]
        secrets = [
            (u.username, u.credentials.password_hash)
            for u in (await session.scalars(select(User))).all()
            if u.credentials
        ]
    assert secrets
    text = json.dumps(payloads)
    for username, password_hash in secrets:
        assert username not in text
        assert password_hash not in text

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    assert keys([p["data"] for p in payloads]) & CREDENTIAL_FIELDS == set()


def test_fields_added_to_the_state_events_are_optional_within_v1():
    """Consumers built against the first v1 (without contact details, grants and dates) still parse,
    and an older producer's event still validates: only optional fields are added in a version."""
    first_v1_authority = {
        "id": str(uuid.uuid4()),
        "version": 1,
        "kind": "competent_authority",
        "country": "RO",
        "level": "regional",
        "region": None,
        "official_name": "x",
        "language": "ro",
        "informal_name": "x",
        "profile": "",
        "translations": [{"language": "en", "informal_name": "x", "profile": "", "status": "current"}],
        "status": "active",
        "emails": [],
        "languages": [],
        "areas": [],
        "keywords": {},
        "allocation_enabled": False,
        "links": [],
        "request_coordinators": [],
        "updated_at": "2026-01-01T00:00:00Z",
    }
    state = AuthorityState.model_validate(first_v1_authority)
    assert state.address is None and state.validated_by is None and state.area_grants == []
    first_v1_user = {
        "id": str(uuid.uuid4()),
        "version": 1,
        "authority_id": str(uuid.uuid4()),
        "name": "x",
        "email": "x@example.eu",
        "language": "ro",
        "status": "active",
        "digest": False,
        "roles": [],
        "updated_at": "2026-01-01T00:00:00Z",
    }
    assert UserState.model_validate(first_v1_user).phone is None
