"""Events the registry publishes (``registry.<entity>.<verb>.v<major>``).

State events carry the full current state of an authority or user, never a diff and never a
credential (ARCHITECTURE.md, Read models): a consumer upserts what it receives when its ``version``
is newer than what it holds. ``republished`` events answer a consumer's snapshot request.

Every field the registry keeps about an authority (with its translations, contacts, keywords,
areas, links, request coordinators and coordinator settings) and about a user and their roles is
carried, except the user name (rule S11: it is told in person, so it never reaches an event, hence
never an e-mail) and credentials (password hash, security code, temporary password, refresh tokens).
Fields added within a major version are optional: ``None`` means "not sent by an older producer".
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from shared.events.envelope import Contract, EventData


class Translation(EventData):
    language: str
    informal_name: str
    profile: str
    status: str  # current, outdated or machine
    translated_at: datetime | None = None
    translated_by: str | None = Field(default=None, description='the translator\'s user id, or "machine" (rule A3)')


class AreaGrant(EventData):
    """A legislative area the authority works in, and the coordinator that granted it (rule S13)."""

    area: str
    granted_by: uuid.UUID | None = None
    granted_at: datetime


class LinkDetail(EventData):
    """An authority linked to this one (rule S4), and since when."""

    linked_authority_id: uuid.UUID
    created_at: datetime


class RequestCoordinatorState(EventData):
    area: str
    coordinator_id: uuid.UUID
    full_view: bool


class CoordinatorAreaSettings(EventData):
    """A coordinator's involvement per legislative area (rules S14, S15)."""

    area: str
    referral: str  # yes, delegated or no
    approve_requests: bool
    approve_replies: bool


class AuthorityState(EventData):
    id: uuid.UUID
    version: int
    kind: str
    country: str
    level: str
    region: str | None
    official_name: str
    language: str
    informal_name: str
    profile: str
    address: str | None = Field(default=None, description="contact details (rule S1)")
    phone: str | None = Field(default=None, description="contact details (rule S1)")
    website: str | None = Field(default=None, description="contact details (rule S1)")
    translations: list[Translation] = Field(default_factory=list)
    status: str
    emails: list[str]
    languages: list[str]
    areas: list[str]
    area_grants: list[AreaGrant] = Field(
        default_factory=list, description="the same areas with who granted them and when (rule S13)"
    )
    keywords: dict[str, list[str]]
    allocation_enabled: bool
    links: list[uuid.UUID] = Field(description="authorities linked to this one to see its exchanges (rule S4)")
    link_details: list[LinkDetail] = Field(default_factory=list, description="the same links with their dates")
    request_coordinators: list[RequestCoordinatorState]
    coordinator_settings: list[CoordinatorAreaSettings] = Field(default_factory=list)
    coordinator_area: str | None = None
    registered_by: uuid.UUID | None = None
    validated_by: uuid.UUID | None = Field(default=None, description="the coordinator that validated it (rule A2)")
    created_at: datetime | None = None
    updated_at: datetime


class RoleState(EventData):
    role: str
    area: str | None


class UserState(EventData):
    id: uuid.UUID
    version: int
    authority_id: uuid.UUID
    name: str  # the person's name; the user name (login) is never in an event (rule S11)
    email: str
    phone: str | None = Field(default=None, description="contact details (rule S10)")
    language: str
    status: str
    digest: bool
    roles: list[RoleState]
    created_at: datetime | None = None
    updated_at: datetime


class TemporaryPassword(EventData):
    """A temporary password sealed for the notifier alone (rule S11); never the user name."""

    user_id: uuid.UUID
    reason: str  # new_user or reset
    sealed_password: str  # base64 of a sealed box to the notifier's public key


class UserLocked(EventData):
    user_id: uuid.UUID
    authority_id: uuid.UUID


AUTHORITY_REGISTERED = Contract(
    "registry.authority.registered.v1",
    AuthorityState,
    "An authority was registered; while pending validation its coordinator's data administrators act on it",
)
AUTHORITY_VALIDATED = Contract(
    "registry.authority.validated.v1", AuthorityState, "A coordinator validated an authority: it is active"
)
AUTHORITY_UPDATED = Contract(
    "registry.authority.updated.v1",
    AuthorityState,
    "Anything about an authority changed: data, translations, areas, links, coordinators, settings",
)
AUTHORITY_DEACTIVATED = Contract("registry.authority.deactivated.v1", AuthorityState, "An authority was deactivated")
AUTHORITY_REPUBLISHED = Contract(
    "registry.authority.republished.v1", AuthorityState, "An authority's current state, sent again for a snapshot"
)
USER_REGISTERED = Contract("registry.user.registered.v1", UserState, "A user was registered with their roles")
USER_UPDATED = Contract("registry.user.updated.v1", UserState, "A user's data or roles changed")
USER_DEACTIVATED = Contract("registry.user.deactivated.v1", UserState, "A user was deactivated")
USER_REPUBLISHED = Contract(
    "registry.user.republished.v1", UserState, "A user's current state, sent again for a snapshot"
)
TEMPORARY_PASSWORD_ISSUED = Contract(
    "registry.user.temporary_password_issued.v1",
    TemporaryPassword,
    "A new or reset user gets a temporary password, sealed so only the notifier can read it (rule S11)",
)
USER_LOCKED = Contract(
    "registry.user.locked.v1", UserLocked, "Five wrong attempts in a row blocked an account until a reset"
)

AUTHORITY_STATE_EVENTS = (
    AUTHORITY_REGISTERED,
    AUTHORITY_VALIDATED,
    AUTHORITY_UPDATED,
    AUTHORITY_DEACTIVATED,
    AUTHORITY_REPUBLISHED,
)
USER_STATE_EVENTS = (USER_REGISTERED, USER_UPDATED, USER_DEACTIVATED, USER_REPUBLISHED)
