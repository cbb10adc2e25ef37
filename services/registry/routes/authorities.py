"""Authorities and coordinators: registration, validation, data, translations, areas, links,
request coordinators and coordinator settings. Every route needs a signed-in user; what that user
may do to which authority is decided by :mod:`services.registry.access` from the registry's rows."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from services.registry import authorities
from services.registry.access import Actor, forbidden, load_actor
from services.registry.models import AuditEntry, Authority, AuthorityKind
from services.registry.routes.refusals import (
    ALLOCATION_NEEDS_ALLOCATOR,
    AUTHORITY_NOT_FOUND,
    FORBIDDEN,
    KEYWORDS,
    REGISTRATION,
    UNKNOWN_AREA,
    UNKNOWN_LANGUAGE,
    signed_in,
)
from services.registry.schemas import (
    AreaGrant,
    AuditOut,
    AuthorityIn,
    AuthorityOut,
    AuthorityPatch,
    CoordinatorSettingsIn,
    InvitationIn,
    InvitationOut,
    LinkIn,
    OfficialNameIn,
    RequestCoordinatorIn,
    SelfRegistrationIn,
    TranslationIn,
    TranslationOut,
    UserCreated,
    Warning_,
)
from services.registry.validation import check_language
from shared.auth import CurrentPrincipal
from shared.errors import MALFORMED, Refusal, error_responses
from shared.service import Runtime

router = APIRouter(tags=["authorities"])

LANG = Refusal(422, "unknown_language", "'xx' is not one of the 26 languages", field="lang")
NOT_A_COORDINATOR = Refusal(422, "not_a_coordinator", "the request coordinator must be a coordinator", "coordinator_id")

Lang = Annotated[
    str | None,
    Query(
        min_length=2,
        max_length=2,
        description="language to show informal names and profiles in; by default the caller's preferred language",
    ),
]


def shown_language(lang: str | None, actor: Actor) -> str:
    """The language asked for, else the signed-in user's preferred working language (rule S10)."""
    language = lang or actor.user.language
    check_language(language, "lang")
    return language


class AuthorityCreated(BaseModel):
    authority: AuthorityOut
    first_user: UserCreated


def authority_out(authority: Authority, language: str = "en") -> AuthorityOut:
    name, profile, status = authorities.shown_translation(authority, language)
    return AuthorityOut(
        id=authority.id,
        kind=authority.kind,
        country=authority.country,
        level=authority.level,
        region=authority.region,
        official_name=authority.official_name,
        language=authority.language,
        informal_name=authority.informal_name,
        profile=authority.profile,
        shown=TranslationOut(
            language=language if status not in ("original", "untranslated") else authority.language,
            informal_name=name,
            profile=profile,
            status=status,  # type: ignore[arg-type]
        ),
        translations=[
            TranslationOut(language=t.language, informal_name=t.informal_name, profile=t.profile, status=t.status)  # type: ignore[arg-type]
            for t in sorted(authority.translations, key=lambda t: t.language)
        ],
        address=authority.address,
        phone=authority.phone,
        website=authority.website,
        emails=sorted(e.email for e in authority.emails),
        languages=sorted(lang.language for lang in authority.languages),
        areas=sorted(a.area for a in authority.areas),
        keywords=_keywords(authority),
        status=authority.status,
        allocation_enabled=authority.allocation_enabled,
        links=[link.linked_authority_id for link in authority.links],
        request_coordinators=[
            RequestCoordinatorIn(area=rc.area, coordinator_id=rc.coordinator_id, full_view=rc.full_view)
            for rc in sorted(authority.request_coordinators, key=lambda rc: (rc.area, str(rc.coordinator_id)))
        ],
        coordinator_settings={
            s.area: CoordinatorSettingsIn(
                referral=s.referral, approve_requests=s.approve_requests, approve_replies=s.approve_replies
            )
            for s in authority.coordinator_settings
        },
        version=authority.version,
    )


def _keywords(authority: Authority) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for keyword in authority.keywords:
        grouped.setdefault(keyword.list_name, []).append(keyword.code)
    return {name: sorted(codes) for name, codes in sorted(grouped.items())}


@router.post(
    "/authorities",
    status_code=201,
    response_model=AuthorityCreated,
    summary="Register an authority",
    responses=signed_in(
        Refusal(403, "forbidden", "only a coordinator's data administrator registers authorities"), REGISTRATION
    ),
)
async def register_authority(body: AuthorityIn, runtime: Runtime, principal: CurrentPrincipal) -> AuthorityCreated:
    """A coordinator's data administrator registers an authority of its country, which then awaits
    validation; the Commission registers national coordinators (rule A2). The first user's user
    name is answered here, once (rule S11)."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority, user = await authorities.register_authority(uow, runtime.settings, actor, body)
        return AuthorityCreated(
            authority=authority_out(authority, authority.language),
            first_user=UserCreated(id=user.id, username=user.username),
        )


@router.post(
    "/authorities/{authority_id}/validate",
    response_model=AuthorityOut,
    summary="Validate a registration",
    responses=signed_in(
        Refusal(403, "forbidden", "only a data administrator of its coordinator validates an authority"),
        AUTHORITY_NOT_FOUND,
        Refusal(409, "not_pending", "the authority is active, not pending validation"),
    ),
)
async def validate_authority(authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.validate_authority(uow, runtime.settings, actor, authority_id)
        return authority_out(authority, authority.language)


@router.get(
    "/authorities/{authority_id}",
    response_model=AuthorityOut,
    summary="An authority, in your language",
    responses=signed_in(AUTHORITY_NOT_FOUND, LANG),
)
async def get_authority(
    authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal, lang: Lang = None
) -> AuthorityOut:
    if lang is not None:
        check_language(lang, "lang")
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.get_authority(uow, authority_id), shown_language(lang, actor))


@router.patch(
    "/authorities/{authority_id}",
    response_model=AuthorityOut,
    summary="Update the authority's data",
    responses=signed_in(
        FORBIDDEN,
        AUTHORITY_NOT_FOUND,
        ALLOCATION_NEEDS_ALLOCATOR,
        Refusal(422, "unknown_language", "'xx' is not one of the 26 languages", field="languages"),
        KEYWORDS,
    ),
)
async def update_authority(
    authority_id: uuid.UUID, body: AuthorityPatch, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.update_authority(uow, actor, authority_id, body)
        return authority_out(authority, authority.language)


@router.put(
    "/authorities/{authority_id}/official-name",
    response_model=AuthorityOut,
    summary="Change the official name",
    responses=signed_in(
        Refusal(403, "forbidden", "only a data administrator of its coordinator changes an official name"),
        AUTHORITY_NOT_FOUND,
    ),
)
async def change_official_name(
    authority_id: uuid.UUID, body: OfficialNameIn, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.change_official_name(uow, actor, authority_id, body.official_name)
        return authority_out(authority, authority.language)


@router.put(
    "/authorities/{authority_id}/translations/{language}",
    response_model=AuthorityOut,
    summary="Store a translation of the informal name and profile (the Commission's translators)",
    responses=signed_in(
        Refusal(403, "forbidden", "translations are provided by the Commission's translators"),
        AUTHORITY_NOT_FOUND,
        UNKNOWN_LANGUAGE,
        Refusal(422, "original_language", "the original is already in this language", field="language"),
    ),
)
async def set_translation(
    authority_id: uuid.UUID, language: str, body: TranslationIn, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    check_language(language, "language")
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.set_translation(uow, actor, authority_id, language, body)
        return authority_out(authority, language)


@router.post(
    "/authorities/{authority_id}/areas",
    response_model=AuthorityOut,
    summary="Grant a legislative area",
    responses=signed_in(
        Refusal(403, "forbidden", "only a data administrator for 'services' of its coordinator grants that area"),
        AUTHORITY_NOT_FOUND,
        Refusal(409, "area_already_granted", "the authority already works in 'services'", field="area"),
        UNKNOWN_AREA,
    ),
)
async def grant_area(
    authority_id: uuid.UUID, body: AreaGrant, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.grant_area(uow, actor, authority_id, body.area))


@router.post(
    "/authorities/{authority_id}/links",
    response_model=AuthorityOut,
    summary="Link an authority (S4)",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority links authorities"),
        AUTHORITY_NOT_FOUND,
        Refusal(404, "not_found", "no such authority", field="linked_authority_id"),
        Refusal(409, "already_linked", "these authorities are already linked", field="linked_authority_id"),
        Refusal(
            422, "link_across_countries", "linked authorities are of the same country", field="linked_authority_id"
        ),
        Refusal(422, "link_to_itself", "an authority cannot be linked to itself", field="linked_authority_id"),
    ),
)
async def add_link(
    authority_id: uuid.UUID, body: LinkIn, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.add_link(uow, actor, authority_id, body.linked_authority_id))


@router.delete(
    "/authorities/{authority_id}/links/{linked_authority_id}",
    response_model=AuthorityOut,
    summary="Remove a link",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority removes links"),
        AUTHORITY_NOT_FOUND,
        Refusal(404, "not_found", "no such link", field="linked_authority_id"),
    ),
)
async def remove_link(
    authority_id: uuid.UUID, linked_authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.remove_link(uow, actor, authority_id, linked_authority_id))


@router.put(
    "/authorities/{authority_id}/request-coordinators",
    response_model=AuthorityOut,
    summary="Choose a request coordinator for an area (S5)",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority chooses its request coordinators"),
        AUTHORITY_NOT_FOUND,
        UNKNOWN_AREA,
        Refusal(422, "area_not_granted", "the authority does not work in 'services'", field="area"),
        NOT_A_COORDINATOR,
        Refusal(
            422, "coordinator_of_another_country", "request coordinators are of the same country", "coordinator_id"
        ),
    ),
)
async def set_request_coordinator(
    authority_id: uuid.UUID, body: RequestCoordinatorIn, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    """Rule S5: link a coordinator for an area, with or without full view."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.set_request_coordinator(uow, actor, authority_id, body))


@router.delete(
    "/authorities/{authority_id}/request-coordinators/{area}/{coordinator_id}",
    response_model=AuthorityOut,
    summary="Remove a request coordinator",
    responses=signed_in(
        Refusal(403, "forbidden", "only a local data administrator of this authority chooses its request coordinators"),
        AUTHORITY_NOT_FOUND,
        Refusal(404, "not_found", "no such request coordinator", field="coordinator_id"),
        Refusal(409, "last_request_coordinator", "'services' needs at least one request coordinator"),
    ),
)
async def remove_request_coordinator(
    authority_id: uuid.UUID, area: str, coordinator_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.remove_request_coordinator(uow, actor, authority_id, area, coordinator_id)
        return authority_out(authority)


@router.put(
    "/coordinators/{coordinator_id}/settings/{area}",
    response_model=AuthorityOut,
    summary="A coordinator's referral and approval settings for an area (S14, S15)",
    responses=signed_in(
        Refusal(403, "forbidden", "the coordinator's own data administrators choose its involvement"),
        Refusal(404, "not_found", "no such authority", field="authority_id"),
        Refusal(
            409,
            "referral_needs_referral_user",
            "delegating referrals needs a referral user in 'professional_qualifications'",
        ),
        UNKNOWN_AREA,
        Refusal(422, "not_a_coordinator", "only coordinators have these settings", field="coordinator_id"),
        Refusal(422, "area_not_granted", "the coordinator does not cover 'services'", field="area"),
    ),
)
async def set_coordinator_settings(
    coordinator_id: uuid.UUID, area: str, body: CoordinatorSettingsIn, runtime: Runtime, principal: CurrentPrincipal
) -> AuthorityOut:
    """Rules S14, S15: referral participation and approval of requests and replies, per area."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.set_coordinator_settings(uow, actor, coordinator_id, area, body))


@router.post(
    "/authorities/{authority_id}/deactivate",
    response_model=AuthorityOut,
    summary="Deactivate an authority",
    responses=signed_in(
        Refusal(403, "forbidden", "only a data administrator of its coordinator deactivates an authority"),
        AUTHORITY_NOT_FOUND,
        Refusal(409, "already_deactivated", "the authority is already deactivated"),
    ),
)
async def deactivate_authority(authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> AuthorityOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        return authority_out(await authorities.deactivate_authority(uow, actor, authority_id))


def _may_see_internals(actor: Actor, authority: Authority) -> bool:
    return actor.is_local_data_administrator_of(authority.id) or actor.is_data_administrator_for(authority)


@router.get(
    "/authorities/{authority_id}/warnings",
    response_model=list[Warning_],
    summary="Set-up warnings (S7)",
    responses=signed_in(
        Refusal(403, "forbidden", "the authority's local data administrators and its coordinator see its warnings"),
        AUTHORITY_NOT_FOUND,
    ),
)
async def authority_warnings(authority_id: uuid.UUID, runtime: Runtime, principal: CurrentPrincipal) -> list[Warning_]:
    """Rule S7: set-up warnings, such as a legislative area with a single request handler."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.get_authority(uow, authority_id)
        if not _may_see_internals(actor, authority):
            raise forbidden("the authority's local data administrators and its coordinator see its warnings")
        return await authorities.warnings(uow, authority)


@router.get(
    "/authorities/{authority_id}/audit",
    response_model=list[AuditOut],
    summary="The authority's audit trail, newest first",
    responses=signed_in(
        Refusal(403, "forbidden", "the authority's local data administrators and its coordinator see its audit trail"),
        AUTHORITY_NOT_FOUND,
    ),
)
async def authority_audit(
    authority_id: uuid.UUID,
    runtime: Runtime,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditOut]:
    """Who changed what and when, newest first."""
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        authority = await authorities.get_authority(uow, authority_id)
        if not _may_see_internals(actor, authority):
            raise forbidden("the authority's local data administrators and its coordinator see its audit trail")
        entries = await uow.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "authority", AuditEntry.entity_id == str(authority_id))
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        return [
            AuditOut(
                at=e.at,
                actor_user_id=e.actor_user_id,
                actor_authority_id=e.actor_authority_id,
                action=e.action,
                changes=e.changes,
            )
            for e in entries
        ]


@router.post(
    "/invitations",
    status_code=201,
    response_model=InvitationOut,
    summary="Invite self-registration",
    responses=signed_in(Refusal(403, "forbidden", "only a coordinator's data administrator invites self-registration")),
)
async def invite(body: InvitationIn, runtime: Runtime, principal: CurrentPrincipal) -> InvitationOut:
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        invitation, token = await authorities.invite(uow, actor, body.email)
        return InvitationOut(id=invitation.id, token=token, expires_at=invitation.expires_at)


@router.post(
    "/registrations",
    status_code=201,
    response_model=AuthorityCreated,
    summary="Register with an invitation",
    responses=error_responses(
        Refusal(403, "invalid_invitation", "this invitation is unknown, used or expired", field="token"),
        Refusal(422, "kind_not_allowed", "coordinators do not register themselves", field="kind"),
        Refusal(422, "wrong_country", "the invitation is for an authority of the coordinator's country", "country"),
        Refusal(422, "area_not_covered", "the coordinator does not cover ['services']", field="areas"),
        Refusal(422, "region_not_covered", "the inviting coordinator covers the region 'Cluj' only", field="region"),
        REGISTRATION,
        MALFORMED,
    ),
)
async def self_register(body: SelfRegistrationIn, runtime: Runtime) -> AuthorityCreated:
    """An invited authority registers itself and waits for its coordinator's validation; no sign-in."""
    async with runtime.messaging.transaction() as uow:
        authority, user = await authorities.self_register(uow, runtime.settings, body.token, body.authority)
        return AuthorityCreated(
            authority=authority_out(authority, authority.language),
            first_user=UserCreated(id=user.id, username=user.username),
        )


@router.get(
    "/coordinators",
    response_model=list[AuthorityOut],
    summary="Coordinators of a country",
    responses=signed_in(LANG),
)
async def list_coordinators(
    runtime: Runtime,
    principal: CurrentPrincipal,
    country: Annotated[str, Query(min_length=2, max_length=2)],
    lang: Lang = None,
) -> list[AuthorityOut]:
    if lang is not None:
        check_language(lang, "lang")
    async with runtime.messaging.transaction() as uow:
        actor = await load_actor(uow, principal)
        language = shown_language(lang, actor)
        found = await uow.session.scalars(
            select(Authority).where(
                Authority.country == country.upper(), Authority.kind != AuthorityKind.competent_authority
            )
        )
        return [authority_out(a, language) for a in found]
