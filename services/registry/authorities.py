"""Authorities and coordinators: registration, validation, their data, translations, legislative
areas, links and request coordinators (rules A1–A5, S1–S5, S8, S13–S15)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.registry.access import Actor, forbidden, not_found
from services.registry.models import (
    Authority,
    AuthorityArea,
    AuthorityEmail,
    AuthorityKeyword,
    AuthorityKind,
    AuthorityLanguage,
    AuthorityLink,
    AuthorityStatus,
    AuthorityTranslation,
    CoordinatorSetting,
    Invitation,
    RequestCoordinator,
    Role,
    TranslationStatus,
    User,
    UserStatus,
)
from services.registry.schemas import (
    AuthorityIn,
    AuthorityPatch,
    CoordinatorSettingsIn,
    RequestCoordinatorIn,
    TranslationIn,
    Warning_,
)
from services.registry.state import authority_changed
from services.registry.users import create_user, first_user_roles, holders, issue_temporary_password
from services.registry.validation import (
    check_area,
    check_country,
    check_language,
    check_languages,
    invalid,
    keyword_rows,
)
from shared.contracts.registry import (
    AUTHORITY_DEACTIVATED,
    AUTHORITY_REGISTERED,
    AUTHORITY_UPDATED,
    AUTHORITY_VALIDATED,
)
from shared.errors import ApiError
from shared.languages import LANGUAGE_CODES
from shared.outbox import UnitOfWork
from shared.settings import Settings

INVITATION_VALIDITY = timedelta(days=30)


async def get_authority(uow: UnitOfWork, authority_id: uuid.UUID) -> Authority:
    authority = await uow.session.get(Authority, authority_id)
    if authority is None:
        raise not_found("authority", "authority_id")
    return authority


def _check_registration(data: AuthorityIn) -> None:
    check_country(data.country)
    check_language(data.language)
    check_languages(data.languages)
    for area in data.areas:
        check_area(area, "areas")
    if data.coordinator_area is not None:
        check_area(data.coordinator_area, "coordinator_area")
    if data.level != "national" and not data.region:
        raise invalid("region_required", "a regional or local authority names its region", "region")


def _may_register(actor: Actor, data: AuthorityIn) -> None:
    """Coordinators register authorities and lower coordinators of their country; the Commission
    registers national coordinators (rule A2). Only their data administrators do it (S13)."""
    kind = AuthorityKind(data.kind)
    if actor.is_commission:
        if kind != AuthorityKind.national_coordinator:
            raise forbidden("the Commission registers national coordinators; they register the authorities")
        return
    if not actor.is_coordinator or not actor.has(Role.data_administrator):
        raise forbidden("only a coordinator's data administrator registers authorities")
    if data.country != actor.authority.country:
        raise forbidden("a coordinator registers authorities of its own country")
    if kind in (AuthorityKind.national_coordinator, AuthorityKind.commission):
        raise forbidden("national coordinators are registered by the Commission")
    if kind != AuthorityKind.competent_authority and actor.authority.kind != AuthorityKind.national_coordinator:
        raise forbidden("lower coordinators are registered by the national coordinator")


def _check_coordinator_scope(kind: AuthorityKind, data: AuthorityIn) -> None:
    """Rule A2: a delegated coordinator covers one legislative area (and works in that area only) or
    one region; a super-delegated coordinator covers every area of one region."""
    if kind == AuthorityKind.delegated_coordinator:
        if (data.coordinator_area is None) == (data.region is None):
            raise invalid(
                "coordinator_scope",
                "a delegated coordinator covers one legislative area or one region",
                "coordinator_area",
            )
        if data.coordinator_area is not None and set(data.areas) != {data.coordinator_area}:
            raise invalid("coordinator_scope", "a delegated coordinator for an area works in that area only", "areas")
    elif data.coordinator_area is not None:
        raise invalid("coordinator_scope", "only a delegated coordinator covers a single area", "coordinator_area")
    if kind == AuthorityKind.super_delegated_coordinator and data.region is None:
        raise invalid("coordinator_scope", "a super-delegated coordinator covers one region", "region")


def regional_scope(coordinator: Authority) -> str | None:
    """The region a coordinator is limited to (rule A2): a super-delegated coordinator's, or a
    delegated coordinator's for a region; None for one not limited to a region."""
    if coordinator.kind == AuthorityKind.super_delegated_coordinator or (
        coordinator.kind == AuthorityKind.delegated_coordinator and coordinator.coordinator_area is None
    ):
        return coordinator.region
    return None


async def _national_coordinator_exists(uow: UnitOfWork, country: str) -> bool:
    query = select(Authority.id).where(
        Authority.country == country,
        Authority.kind == AuthorityKind.national_coordinator,
        Authority.status != AuthorityStatus.deactivated,
    )
    return await uow.session.scalar(query) is not None


async def create_authority(
    uow: UnitOfWork,
    settings: Settings,
    data: AuthorityIn,
    *,
    actor: Actor | None,
    registered_by: Authority | None,
    status: AuthorityStatus,
) -> tuple[Authority, User]:
    """The authority, its first user (with every right, rule S9) and its request coordinators
    (the registering coordinator, for each area, rule S5)."""
    _check_registration(data)
    if data.kind == AuthorityKind.national_coordinator and await _national_coordinator_exists(uow, data.country):
        raise ApiError(409, "national_coordinator_exists", "a country has one national coordinator (rule A2)")
    kind = AuthorityKind(data.kind)
    _check_coordinator_scope(kind, data)
    now = uow.clock.now()
    areas = set(data.areas)
    authority = Authority(
        id=uuid.uuid4(),
        kind=kind,
        country=data.country,
        level=data.level,
        region=data.region or None,
        official_name=data.official_name,
        language=data.language,
        informal_name=data.informal_name,
        profile=data.profile,
        address=data.address,
        phone=data.phone,
        website=data.website,
        status=status,
        allocation_enabled=False,
        coordinator_area=data.coordinator_area,
        registered_by_id=registered_by.id if registered_by else None,
        validated_by_id=registered_by.id if registered_by and status == AuthorityStatus.active else None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    authority.emails = [AuthorityEmail(email=e) for e in dict.fromkeys(str(e).lower() for e in data.emails)]
    authority.languages = [AuthorityLanguage(language=lang) for lang in sorted(set(data.languages))]
    authority.keywords = [AuthorityKeyword(list_name=n, code=c) for n, c in sorted(keyword_rows(data.keywords, areas))]
    authority.areas = [
        AuthorityArea(area=area, granted_by_id=registered_by.id if registered_by else None, granted_at=now)
        for area in sorted(areas)
    ]
    if registered_by is not None and AuthorityKind(registered_by.kind).is_coordinator:
        authority.request_coordinators = [
            RequestCoordinator(area=area, coordinator_id=registered_by.id, full_view=False) for area in sorted(areas)
        ]
    if kind.is_coordinator:
        authority.coordinator_settings = [CoordinatorSetting(area=area) for area in sorted(areas)]
    uow.session.add(authority)
    await authority_changed(
        uow,
        authority,
        AUTHORITY_REGISTERED,
        actor=actor.principal if actor else None,
        action="registered",
        changes={"official_name": data.official_name, "status": status.value},
        new=True,
    )
    first_user = await create_user(
        uow, settings, authority, data.first_user, actor=actor, roles=first_user_roles(authority, areas)
    )
    return authority, first_user


async def register_authority(
    uow: UnitOfWork, settings: Settings, actor: Actor, data: AuthorityIn
) -> tuple[Authority, User]:
    """A coordinator registers an authority of its country; it awaits validation (rule A2)."""
    _check_registration(data)
    _may_register(actor, data)
    if not actor.is_commission:
        outside = set(data.areas) - {a.area for a in actor.authority.areas}
        if outside:
            raise forbidden(f"the coordinator does not cover {sorted(outside)}")
        region = regional_scope(actor.authority)
        if region is not None and data.region != region:
            raise ApiError(403, "forbidden", f"the coordinator covers the region {region!r} only", field="region")
    status = AuthorityStatus.active if actor.is_commission else AuthorityStatus.pending_validation
    return await create_authority(uow, settings, data, actor=actor, registered_by=actor.authority, status=status)


async def validate_authority(uow: UnitOfWork, settings: Settings, actor: Actor, authority_id: uuid.UUID) -> Authority:
    """A coordinator's data administrator authenticates a registration (rules A2, S13); its users
    then get their temporary passwords."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_data_administrator_for(authority):
        raise forbidden("only a data administrator of its coordinator validates an authority")
    if authority.status != AuthorityStatus.pending_validation:
        raise ApiError(409, "not_pending", f"the authority is {authority.status}, not pending validation")
    authority.status = AuthorityStatus.active
    authority.validated_by_id = actor.authority.id
    await authority_changed(uow, authority, AUTHORITY_VALIDATED, actor=actor.principal, action="validated")
    users = (await uow.session.scalars(select(User).where(User.authority_id == authority.id))).all()
    for user in users:
        if user.status == UserStatus.active:
            await issue_temporary_password(uow, settings, user, reason="new_user")
    return authority


def _mark_translations(authority: Authority, significant: bool) -> None:
    """Rule S1: a significant change needs new translations; a spelling fix does not."""
    if significant:
        for translation in authority.translations:
            translation.status = TranslationStatus.outdated


async def update_authority(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, patch: AuthorityPatch) -> Authority:
    """The authority's own local data administrator keeps its data current (rules S1–S3, S8)."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority changes its data")
    changes = patch.model_dump(exclude_unset=True, mode="json")
    if patch.informal_name is not None or patch.profile is not None:
        texts_changed = (patch.informal_name not in (None, authority.informal_name)) or (
            patch.profile not in (None, authority.profile)
        )
        if patch.informal_name is not None:
            authority.informal_name = patch.informal_name
        if patch.profile is not None:
            authority.profile = patch.profile
        if texts_changed:
            _mark_translations(authority, patch.significant)
    for field in ("address", "phone", "website"):
        value = getattr(patch, field)
        if value is not None:
            setattr(authority, field, value)
    if patch.emails is not None:
        authority.emails = [AuthorityEmail(email=e) for e in dict.fromkeys(str(e).lower() for e in patch.emails)]
    if patch.languages is not None:
        check_languages(patch.languages)
        authority.languages = [AuthorityLanguage(language=lang) for lang in sorted(set(patch.languages))]
    if patch.keywords is not None:
        rows = keyword_rows(patch.keywords, {a.area for a in authority.areas})
        authority.keywords = [AuthorityKeyword(list_name=n, code=c) for n, c in sorted(rows)]
    if patch.allocation_enabled is not None:
        if patch.allocation_enabled:
            await _require_allocators(uow, authority)
        authority.allocation_enabled = patch.allocation_enabled
    await uow.session.flush()
    await authority_changed(uow, authority, AUTHORITY_UPDATED, actor=actor.principal, action="updated", changes=changes)
    return authority


async def _require_allocators(uow: UnitOfWork, authority: Authority) -> None:
    """Rule S8: allocation on means an allocator must exist (in every area the authority works in)."""
    for area in sorted(a.area for a in authority.areas):
        if not await holders(uow, authority.id, Role.allocator, area):
            raise ApiError(
                409,
                "allocation_needs_allocator",
                f"turning allocation on needs an allocator in {area!r}",
                field="allocation_enabled",
            )


async def change_official_name(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, name: str) -> Authority:
    """Rule S13: only a coordinator's data administrator changes an official name (never translated, S1)."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_data_administrator_for(authority):
        raise forbidden("only a data administrator of its coordinator changes an official name")
    previous, authority.official_name = authority.official_name, name
    await authority_changed(
        uow,
        authority,
        AUTHORITY_UPDATED,
        actor=actor.principal,
        action="official_name_changed",
        changes={"from": previous, "to": name},
    )
    return authority


async def set_translation(
    uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, language: str, data: TranslationIn
) -> Authority:
    """Translations come from the Commission's translators (rule A3); they are current until the
    original changes significantly (S1)."""
    authority = await get_authority(uow, authority_id)
    if not (actor.is_commission and actor.has(Role.translator)):
        raise forbidden("translations are provided by the Commission's translators")
    await store_translation(uow, authority, language, data, status=TranslationStatus.current, by=actor.user.id.hex)
    await authority_changed(
        uow, authority, AUTHORITY_UPDATED, actor=actor.principal, action="translated", changes={"language": language}
    )
    return authority


async def store_translation(
    uow: UnitOfWork,
    authority: Authority,
    language: str,
    data: TranslationIn,
    *,
    status: TranslationStatus,
    by: str,
) -> None:
    check_language(language)
    if language == authority.language:
        raise invalid("original_language", "the original is already in this language", "language")
    existing = next((t for t in authority.translations if t.language == language), None)
    if existing is None:
        existing = AuthorityTranslation(language=language)
        authority.translations.append(existing)
    existing.informal_name = data.informal_name
    existing.profile = data.profile
    existing.status = status
    existing.translated_at = uow.clock.now()
    existing.translated_by = by


async def grant_area(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, area: str) -> Authority:
    """Rule S13: a coordinator's data administrator for ``area`` gives an authority access to it;
    the coordinator becomes its request coordinator for the area (S5)."""
    check_area(area)
    authority = await get_authority(uow, authority_id)
    if not actor.is_data_administrator_for(authority, area):
        raise forbidden(f"only a data administrator for {area!r} of its coordinator grants that area")
    if area in {a.area for a in authority.areas}:
        raise ApiError(409, "area_already_granted", f"the authority already works in {area!r}", field="area")
    authority.areas.append(AuthorityArea(area=area, granted_by_id=actor.authority.id, granted_at=uow.clock.now()))
    if not actor.is_commission:
        authority.request_coordinators.append(
            RequestCoordinator(area=area, coordinator_id=actor.authority.id, full_view=False)
        )
    if AuthorityKind(authority.kind).is_coordinator:
        authority.coordinator_settings.append(CoordinatorSetting(area=area))
    await authority_changed(
        uow, authority, AUTHORITY_UPDATED, actor=actor.principal, action="area_granted", changes={"area": area}
    )
    return authority


async def add_link(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, linked_id: uuid.UUID) -> Authority:
    """Rule S4: only a local data administrator links an authority of the same country, which then
    sees a high-level view of this authority's exchanges (never personal data)."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority links authorities")
    linked = await uow.session.get(Authority, linked_id)
    if linked is None:
        raise not_found("authority", "linked_authority_id")
    if linked.country != authority.country:
        raise invalid("link_across_countries", "linked authorities are of the same country", "linked_authority_id")
    if linked.id == authority.id:
        raise invalid("link_to_itself", "an authority cannot be linked to itself", "linked_authority_id")
    if linked_id in {link.linked_authority_id for link in authority.links}:
        raise ApiError(409, "already_linked", "these authorities are already linked", field="linked_authority_id")
    authority.links.append(AuthorityLink(linked_authority_id=linked_id, created_at=uow.clock.now()))
    await authority_changed(
        uow, authority, AUTHORITY_UPDATED, actor=actor.principal, action="linked", changes={"linked": str(linked_id)}
    )
    return authority


async def remove_link(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, linked_id: uuid.UUID) -> Authority:
    authority = await get_authority(uow, authority_id)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority removes links")
    link = next((link for link in authority.links if link.linked_authority_id == linked_id), None)
    if link is None:
        raise not_found("link", "linked_authority_id")
    authority.links.remove(link)
    await authority_changed(
        uow, authority, AUTHORITY_UPDATED, actor=actor.principal, action="unlinked", changes={"linked": str(linked_id)}
    )
    return authority


async def set_request_coordinator(
    uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, data: RequestCoordinatorIn
) -> Authority:
    """Rule S5: more request coordinators can be added per area; the authority may grant full view."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority chooses its request coordinators")
    check_area(data.area)
    if data.area not in {a.area for a in authority.areas}:
        raise invalid("area_not_granted", f"the authority does not work in {data.area!r}", "area")
    coordinator = await uow.session.get(Authority, data.coordinator_id)
    if coordinator is None or not AuthorityKind(coordinator.kind).is_coordinator:
        raise invalid("not_a_coordinator", "the request coordinator must be a coordinator", "coordinator_id")
    if coordinator.kind != AuthorityKind.commission and coordinator.country != authority.country:
        raise invalid(
            "coordinator_of_another_country", "request coordinators are of the same country", "coordinator_id"
        )
    existing = next(
        (
            rc
            for rc in authority.request_coordinators
            if rc.area == data.area and rc.coordinator_id == data.coordinator_id
        ),
        None,
    )
    if existing is None:
        authority.request_coordinators.append(
            RequestCoordinator(area=data.area, coordinator_id=data.coordinator_id, full_view=data.full_view)
        )
    else:
        existing.full_view = data.full_view
    await authority_changed(
        uow,
        authority,
        AUTHORITY_UPDATED,
        actor=actor.principal,
        action="request_coordinator_set",
        changes=data.model_dump(mode="json"),
    )
    return authority


async def remove_request_coordinator(
    uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID, area: str, coordinator_id: uuid.UUID
) -> Authority:
    """Rule S5: at least one request coordinator stays linked for each legislative area."""
    authority = await get_authority(uow, authority_id)
    if not actor.is_local_data_administrator_of(authority.id):
        raise forbidden("only a local data administrator of this authority chooses its request coordinators")
    in_area = [rc for rc in authority.request_coordinators if rc.area == area]
    target = next((rc for rc in in_area if rc.coordinator_id == coordinator_id), None)
    if target is None:
        raise not_found("request coordinator", "coordinator_id")
    if len(in_area) == 1:
        raise ApiError(409, "last_request_coordinator", f"{area!r} needs at least one request coordinator")
    authority.request_coordinators.remove(target)
    await authority_changed(
        uow,
        authority,
        AUTHORITY_UPDATED,
        actor=actor.principal,
        action="request_coordinator_removed",
        changes={"area": area, "coordinator_id": str(coordinator_id)},
    )
    return authority


async def set_coordinator_settings(
    uow: UnitOfWork, actor: Actor, coordinator_id: uuid.UUID, area: str, data: CoordinatorSettingsIn
) -> Authority:
    """Rules S14, S15: a coordinator chooses, per legislative area, its part in referrals and whether
    it approves requests and replies. Defaults: referral yes, no approval."""
    check_area(area)
    coordinator = await get_authority(uow, coordinator_id)
    if not AuthorityKind(coordinator.kind).is_coordinator:
        raise invalid("not_a_coordinator", "only coordinators have these settings", "coordinator_id")
    if actor.authority.id != coordinator.id or not (
        actor.has(Role.data_administrator, area) or actor.has(Role.local_data_administrator)
    ):
        raise forbidden("the coordinator's own data administrators choose its involvement")
    if area not in {a.area for a in coordinator.areas}:
        raise invalid("area_not_granted", f"the coordinator does not cover {area!r}", "area")
    if data.referral == "delegated" and not await holders(uow, coordinator.id, Role.referral_user, area):
        raise ApiError(409, "referral_needs_referral_user", f"delegating referrals needs a referral user in {area!r}")
    setting = next((s for s in coordinator.coordinator_settings if s.area == area), None)
    if setting is None:
        setting = CoordinatorSetting(area=area)
        coordinator.coordinator_settings.append(setting)
    setting.referral = data.referral
    setting.approve_requests = data.approve_requests
    setting.approve_replies = data.approve_replies
    await authority_changed(
        uow,
        coordinator,
        AUTHORITY_UPDATED,
        actor=actor.principal,
        action="coordinator_settings_changed",
        changes={"area": area, **data.model_dump(mode="json")},
    )
    return coordinator


async def deactivate_authority(uow: UnitOfWork, actor: Actor, authority_id: uuid.UUID) -> Authority:
    authority = await get_authority(uow, authority_id)
    if not actor.is_data_administrator_for(authority):
        raise forbidden("only a data administrator of its coordinator deactivates an authority")
    if authority.status == AuthorityStatus.deactivated:
        raise ApiError(409, "already_deactivated", "the authority is already deactivated")
    authority.status = AuthorityStatus.deactivated
    await authority_changed(uow, authority, AUTHORITY_DEACTIVATED, actor=actor.principal, action="deactivated")
    return authority


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def invite(uow: UnitOfWork, actor: Actor, email: str) -> tuple[Invitation, str]:
    """A coordinator invites an authority to register itself (rule A2); it validates it afterwards."""
    if not actor.is_coordinator or actor.is_commission or not actor.has(Role.data_administrator):
        raise forbidden("only a coordinator's data administrator invites self-registration")
    token = secrets.token_urlsafe(24)
    invitation = Invitation(
        token_hash=_token_hash(token),
        coordinator_id=actor.authority.id,
        country=actor.authority.country,
        email=email,
        expires_at=uow.clock.now() + INVITATION_VALIDITY,
    )
    uow.session.add(invitation)
    await uow.session.flush()
    return invitation, token


async def self_register(uow: UnitOfWork, settings: Settings, token: str, data: AuthorityIn) -> tuple[Authority, User]:
    """An invited authority registers itself; it waits for its coordinator's validation."""
    invitation = await uow.session.scalar(select(Invitation).where(Invitation.token_hash == _token_hash(token)))
    now = uow.clock.now()
    if invitation is None or invitation.used_at is not None or _aware(invitation.expires_at) < now:
        raise ApiError(403, "invalid_invitation", "this invitation is unknown, used or expired", field="token")
    if data.kind != AuthorityKind.competent_authority:
        raise invalid("kind_not_allowed", "coordinators do not register themselves", "kind")
    if data.country != invitation.country:
        raise invalid("wrong_country", "the invitation is for an authority of the coordinator's country", "country")
    coordinator = await get_authority(uow, invitation.coordinator_id)
    outside = set(data.areas) - {a.area for a in coordinator.areas}
    if outside:
        raise invalid("area_not_covered", f"the coordinator does not cover {sorted(outside)}", "areas")
    region = regional_scope(coordinator)
    if region is not None and data.region != region:
        raise invalid("region_not_covered", f"the inviting coordinator covers the region {region!r} only", "region")
    invitation.used_at = now
    return await create_authority(
        uow, settings, data, actor=None, registered_by=coordinator, status=AuthorityStatus.pending_validation
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def warnings(uow: UnitOfWork, authority: Authority) -> list[Warning_]:
    """Rule S7: always at least one backup user; warn when an area has a single request handler."""
    found = []
    for area in sorted(a.area for a in authority.areas):
        handlers = await holders(uow, authority.id, Role.request_handler, area)
        if len(handlers) < 2:
            found.append(
                Warning_(
                    code="single_request_handler" if handlers else "no_request_handler",
                    message=f"{len(handlers)} request handler(s) in {area}: register a backup (rule S7)",
                    area=area,
                )
            )
    if not await holders(uow, authority.id, Role.local_data_administrator, None):
        found.append(Warning_(code="no_local_data_administrator", message="no local data administrator"))
    return found


def shown_translation(authority: Authority, language: str) -> tuple[str, str, str]:
    """The informal name and profile in ``language``: the translation, else the original marked as
    such (rule S1)."""
    if language == authority.language:
        return authority.informal_name, authority.profile, "original"
    if language in LANGUAGE_CODES:
        for translation in authority.translations:
            if translation.language == language:
                return translation.informal_name, translation.profile, translation.status
    return authority.informal_name, authority.profile, "untranslated"
