"""What the registry's API accepts and answers. Every text has a length limit; codes are checked
against the reference data by :mod:`services.registry.validation`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from pydantic.json_schema import JsonDict

from services.registry.models import AuthorityKind, Level, Referral, Role

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Profile = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
LanguageCode = Annotated[str, StringConstraints(min_length=2, max_length=2)]
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2, to_upper=True)]
AreaCode = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=100)]


AUTHORITY_EXAMPLE: JsonDict = {
    "country": "RO",
    "level": "regional",
    "region": "Cluj",
    "official_name": "Colegiul Medicilor Cluj",
    "language": "ro",
    "informal_name": "Colegiul regional al medicilor din Cluj",
    "profile": "Recunoașterea calificărilor profesionale ale medicilor din regiunea Cluj.",
    "emails": ["office@cmcluj.example.ro"],
    "languages": ["ro", "en"],
    "areas": ["professional_qualifications"],
    "keywords": {"areas": {"professional_qualifications": ["doctor_of_medicine"]}},
    "first_user": {"name": "Ana Pop", "email": "ana.pop@cmcluj.example.ro", "language": "ro"},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Keywords(Strict):
    """Competence keywords (rules S2, S3): codes from the economic-activity and policy-area lists,
    and per legislative area from that area's list."""

    economic_activities: list[Code] = Field(default_factory=list, max_length=200)
    policy_areas: list[Code] = Field(default_factory=list, max_length=200)
    areas: dict[AreaCode, list[Code]] = Field(default_factory=dict, max_length=20)


class RoleGrant(Strict):
    role: Role
    area: AreaCode | None = Field(default=None, description="the legislative area, for per-area roles")


class UserIn(Strict):
    """Rule S10: contact details, preferred working language and the user's own e-mail address."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Mihai Ionescu",
                    "email": "mihai.ionescu@cmcluj.example.ro",
                    "phone": "+40 264 000 000",
                    "language": "ro",
                    "roles": [{"role": "request_handler", "area": "professional_qualifications"}],
                }
            ]
        },
    )

    name: Name
    email: EmailStr
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    language: LanguageCode
    roles: list[RoleGrant] = Field(default_factory=list, max_length=100)


class UserCreated(BaseModel):
    """The user name is answered once, to the registering administrator only (rule S11)."""

    id: uuid.UUID
    username: str


class UserOut(BaseModel):
    id: uuid.UUID
    authority_id: uuid.UUID
    name: str
    email: str
    phone: str
    language: str
    status: str
    digest: bool
    roles: list[RoleGrant]


class UserPatch(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"phone": "+40 264 000 222", "language": "ro", "digest": True}]}
    )

    name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    language: LanguageCode | None = None
    email: EmailStr | None = None
    digest: bool | None = None
    username: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{3,63}$")] | None = None


class RolesIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "roles": [
                        {"role": "allocator", "area": "professional_qualifications"},
                        {"role": "request_handler", "area": "professional_qualifications"},
                        {"role": "local_data_administrator"},
                    ]
                }
            ]
        }
    )

    roles: list[RoleGrant] = Field(max_length=100)


class UsernameOut(BaseModel):
    id: uuid.UUID
    username: str


class AuthorityIn(Strict):
    """An authority registered by a coordinator (or a coordinator by the Commission)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [AUTHORITY_EXAMPLE]})

    kind: AuthorityKind = AuthorityKind.competent_authority
    country: CountryCode
    level: Level
    region: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    official_name: Name
    language: LanguageCode
    informal_name: Name
    profile: Profile = ""
    address: ShortText = ""
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    website: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    emails: list[EmailStr] = Field(min_length=1, max_length=10)
    languages: list[LanguageCode] = Field(default_factory=list, max_length=26)
    areas: list[AreaCode] = Field(default_factory=list, max_length=20)
    keywords: Keywords = Field(default_factory=Keywords)
    coordinator_area: AreaCode | None = Field(default=None, description="delegated coordinators: their one area")
    first_user: UserIn


class AuthorityPatch(Strict):
    """What the authority's own local data administrator keeps current (rules S1–S3, S8)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "informal_name": "Colegiul regional al medicilor din Cluj – recunoașterea calificărilor medicilor",
                    "profile": "Autoritate competentă pentru recunoașterea calificărilor medicilor din Cluj.",
                    "significant": True,
                    "phone": "+40 264 000 111",
                    "website": "https://www.cmcluj.example.ro",
                    "languages": ["ro", "en", "fr"],
                    "keywords": {
                        "economic_activities": ["Q"],
                        "policy_areas": ["public_health"],
                        "areas": {"professional_qualifications": ["doctor_of_medicine", "specialised_doctor"]},
                    },
                    "allocation_enabled": True,
                }
            ]
        }
    )

    informal_name: Name | None = None
    profile: Profile | None = None
    significant: bool = Field(
        default=True,
        description="false for a spelling fix: translations stay current; true marks them outdated (rule S1)",
    )
    address: ShortText | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    website: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    emails: list[EmailStr] | None = Field(default=None, min_length=1, max_length=10)
    languages: list[LanguageCode] | None = Field(default=None, max_length=26)
    keywords: Keywords | None = None
    allocation_enabled: bool | None = None


class OfficialNameIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"official_name": "Colegiul Medicilor din Județul Cluj"}]}
    )

    official_name: Name


class TranslationIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "informal_name": "Regional college of physicians of Cluj – recognition of doctors",
                    "profile": "Competent authority for the recognition of doctors' qualifications in Cluj.",
                }
            ]
        }
    )

    informal_name: Name
    profile: Profile = ""


class AreaGrant(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"area": "professional_qualifications"}]})

    area: AreaCode


class LinkIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"linked_authority_id": "0b6f3c2e-8d4a-4f61-9e27-5a1c7d3b9f80"}]}
    )

    linked_authority_id: uuid.UUID


class RequestCoordinatorIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "area": "professional_qualifications",
                    "coordinator_id": "7d2a9e41-3c5b-4b8f-a1e6-9f0c2d4b6a13",
                    "full_view": True,
                }
            ]
        }
    )

    area: AreaCode
    coordinator_id: uuid.UUID
    full_view: bool = False


class CoordinatorSettingsIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"referral": "yes", "approve_requests": True, "approve_replies": True}]}
    )

    referral: Referral = Referral.yes
    approve_requests: bool = False
    approve_replies: bool = False


class InvitationIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "office@cmtimis.example.ro"}]})

    email: EmailStr


class InvitationOut(BaseModel):
    id: uuid.UUID
    token: str = Field(description="give it to the invited authority; it is shown only now")
    expires_at: datetime


class SelfRegistrationIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"token": "m3Xq9Lw2Rt7Kz5Pb1Nv8Hc4Yd6Fj0Gs", "authority": AUTHORITY_EXAMPLE}]}
    )

    token: Annotated[str, StringConstraints(min_length=10, max_length=200)]
    authority: AuthorityIn


class TranslationOut(BaseModel):
    language: str
    informal_name: str
    profile: str
    status: Literal["current", "outdated", "machine", "original", "untranslated"]


class AuthorityOut(BaseModel):
    id: uuid.UUID
    kind: str
    country: str
    level: str
    region: str | None
    official_name: str
    language: str
    informal_name: str
    profile: str
    shown: TranslationOut = Field(description="informal name and profile in the language asked for")
    translations: list[TranslationOut]
    address: str
    phone: str
    website: str
    emails: list[str]
    languages: list[str]
    areas: list[str]
    keywords: dict[str, list[str]]
    status: str
    allocation_enabled: bool
    links: list[uuid.UUID]
    request_coordinators: list[RequestCoordinatorIn]
    coordinator_settings: dict[str, CoordinatorSettingsIn]
    version: int


class Warning_(BaseModel):
    code: str
    message: str
    area: str | None = None


class AuditOut(BaseModel):
    at: datetime
    actor_user_id: str | None
    actor_authority_id: str | None
    action: str
    changes: dict[str, object]
