"""The registry's own database: who is who (rules A1–A5, S1–S15).

Authorities (coordinators and the Commission are authorities too, rule A2), their translations,
contacts, keywords, legislative areas, links and request coordinators; coordinators' per-area
settings; users, their roles and credentials; the audit trail; the directory's search documents.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.database import UtcDateTime
from shared.outbox import messaging_tables

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
messaging = messaging_tables(metadata)
# Tables the migrations create with dialect-specific DDL (full-text search) that the models do
# not describe; schema comparisons leave them alone.
metadata.info["unmanaged_tables"] = {
    "directory_fts",
    "directory_fts_data",
    "directory_fts_idx",
    "directory_fts_content",
    "directory_fts_docsize",
    "directory_fts_config",
}


class Base(DeclarativeBase):
    metadata = metadata


class AuthorityKind(StrEnum):
    competent_authority = "competent_authority"  # rule A1
    national_coordinator = "national_coordinator"  # rule A2
    delegated_coordinator = "delegated_coordinator"
    super_delegated_coordinator = "super_delegated_coordinator"
    commission = "commission"  # rule A3

    @property
    def is_coordinator(self) -> bool:
        return self is not AuthorityKind.competent_authority


class Level(StrEnum):
    national = "national"
    regional = "regional"
    local = "local"


class AuthorityStatus(StrEnum):
    pending_validation = "pending_validation"
    active = "active"
    deactivated = "deactivated"


class TranslationStatus(StrEnum):
    current = "current"  # matches the original as it stands
    outdated = "outdated"  # the original changed significantly since (rule S1)
    machine = "machine"  # produced by the machine-translation adapter, not yet reviewed


class Referral(StrEnum):
    """A coordinator's part in referrals, per legislative area (rule S14)."""

    yes = "yes"
    delegated = "delegated"  # a referral user answers for the coordinator
    no = "no"


class Role(StrEnum):
    """Roles per legislative area (rules S9, S13, S14) and authority-wide ones."""

    request_handler = "request_handler"
    allocator = "allocator"
    referral_user = "referral_user"
    data_administrator = "data_administrator"  # coordinators only (rule S13)
    local_data_administrator = "local_data_administrator"  # authority-wide (rule S9)
    translator = "translator"  # the Commission's (rule A3)

    @property
    def per_area(self) -> bool:
        return self not in (Role.local_data_administrator, Role.translator)


class UserStatus(StrEnum):
    active = "active"
    locked = "locked"  # five wrong attempts; until a reset (rule "lost credentials")
    deactivated = "deactivated"


class Authority(Base):
    __tablename__ = "authorities"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[AuthorityKind] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2), index=True)
    level: Mapped[Level] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(200), index=True)
    # Rule S1: the official name stays in the authority's language, never translated.
    official_name: Mapped[str] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(2))  # the language of the original texts
    informal_name: Mapped[str] = mapped_column(String(500))
    profile: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(1000), default="")
    phone: Mapped[str] = mapped_column(String(100), default="")
    website: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[AuthorityStatus] = mapped_column(String(30), index=True)
    allocation_enabled: Mapped[bool] = mapped_column(Boolean, default=False)  # rule S8
    # For delegated coordinators: the one legislative area or region they cover (rule A2).
    coordinator_area: Mapped[str | None] = mapped_column(String(100))
    registered_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("authorities.id"))
    validated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("authorities.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Increases with every change; consumers of the state events keep the highest they saw.
    version: Mapped[int] = mapped_column(Integer, default=1)

    translations: Mapped[list[AuthorityTranslation]] = relationship(
        back_populates="authority", cascade="all, delete-orphan", lazy="selectin"
    )
    emails: Mapped[list[AuthorityEmail]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    languages: Mapped[list[AuthorityLanguage]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    keywords: Mapped[list[AuthorityKeyword]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    areas: Mapped[list[AuthorityArea]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", foreign_keys="AuthorityArea.authority_id"
    )
    links: Mapped[list[AuthorityLink]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", foreign_keys="AuthorityLink.authority_id"
    )
    request_coordinators: Mapped[list[RequestCoordinator]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", foreign_keys="RequestCoordinator.authority_id"
    )
    coordinator_settings: Mapped[list[CoordinatorSetting]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", foreign_keys="CoordinatorSetting.coordinator_id"
    )


class AuthorityTranslation(Base):
    """The informal name and profile in one other language (rule S1)."""

    __tablename__ = "authority_translations"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    language: Mapped[str] = mapped_column(String(2), primary_key=True)
    informal_name: Mapped[str] = mapped_column(String(500))
    profile: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TranslationStatus] = mapped_column(String(20))
    translated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    translated_by: Mapped[str] = mapped_column(String(100))  # a user id, or "machine"

    authority: Mapped[Authority] = relationship(back_populates="translations")


class AuthorityEmail(Base):
    """An authority address: it receives the system's notifications (rule S1)."""

    __tablename__ = "authority_emails"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)


class AuthorityLanguage(Base):
    """A language the authority's staff have working knowledge of (rule S1)."""

    __tablename__ = "authority_languages"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    language: Mapped[str] = mapped_column(String(2), primary_key=True)


class AuthorityKeyword(Base):
    """A competence keyword: an economic activity or policy area (S2), or a legislative area's (S3)."""

    __tablename__ = "authority_keywords"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    # "economic_activity", "policy_area", or a legislative area code
    list_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    code: Mapped[str] = mapped_column(String(100), primary_key=True)


class AuthorityArea(Base):
    """A legislative area the authority works in, granted by a coordinator (rule S13)."""

    __tablename__ = "authority_areas"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    area: Mapped[str] = mapped_column(String(100), primary_key=True)
    granted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("authorities.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuthorityLink(Base):
    """Rule S4: ``linked_authority`` (same country) sees a high-level view of the authority's exchanges."""

    __tablename__ = "authority_links"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    linked_authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RequestCoordinator(Base):
    """Rule S5: a coordinator linked to the authority for one legislative area, with or without full view."""

    __tablename__ = "request_coordinators"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    area: Mapped[str] = mapped_column(String(100), primary_key=True)
    coordinator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    full_view: Mapped[bool] = mapped_column(Boolean, default=False)


class CoordinatorSetting(Base):
    """A coordinator's involvement in one legislative area: referral (S14) and approval (S15)."""

    __tablename__ = "coordinator_settings"

    coordinator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    area: Mapped[str] = mapped_column(String(100), primary_key=True)
    referral: Mapped[Referral] = mapped_column(String(20), default=Referral.yes)
    approve_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    approve_replies: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320), unique=True)  # rule S10: the user's own address
    phone: Mapped[str] = mapped_column(String(100), default="")
    language: Mapped[str] = mapped_column(String(2))  # preferred working language (S10)
    status: Mapped[UserStatus] = mapped_column(String(20))
    digest: Mapped[bool] = mapped_column(Boolean, default=False)  # one daily summary instead of alerts
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    credentials: Mapped[Credentials | None] = relationship(cascade="all, delete-orphan", lazy="selectin")


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "area", "role", name="uq_user_roles_user_area_role"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    area: Mapped[str | None] = mapped_column(String(100))  # None for authority-wide roles
    role: Mapped[Role] = mapped_column(String(40))


class Credentials(Base):
    """A user's secrets. Never in events, logs or API answers.

    The password is an argon2id hash. The 12-digit security code (rule S12) must be checked three
    positions at a time, which no one-way hash of the whole code allows and per-position hashes
    would give away; it is encrypted with AES-256-GCM under the registry's security-code key (from
    the environment, never in the database), with the user id as associated data, and decrypted
    only in memory to compare the three positions asked for.
    """

    __tablename__ = "credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    password_is_temporary: Mapped[bool] = mapped_column(Boolean, default=True)
    security_code: Mapped[bytes | None] = mapped_column(LargeBinary)  # nonce + ciphertext
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LoginChallenge(Base):
    """Step two of a login: three distinct positions of the security code, asked once (rule S12)."""

    __tablename__ = "login_challenges"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    positions: Mapped[list[int]] = mapped_column(JSON)
    # "code" (step two of a normal login) or "setup" (a temporary password must be replaced)
    purpose: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RefreshToken(Base):
    """A rotating refresh token: only its hash is kept; reusing a rotated one revokes its family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Invitation(Base):
    """A coordinator's invitation for an authority to register itself (rule A2)."""

    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    coordinator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"))
    country: Mapped[str] = mapped_column(String(2))
    email: Mapped[str] = mapped_column(String(320))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who changed what, when: every change to an authority, user or role."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor_user_id: Mapped[str | None] = mapped_column(String(100))
    actor_authority_id: Mapped[str | None] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    changes: Mapped[dict[str, object]] = mapped_column(JSON)


class DirectoryDocument(Base):
    """One searchable document per active authority: every name, profile and keyword in every
    language, folded to lower case without accents (rule S1, "Search")."""

    __tablename__ = "directory_documents"

    authority_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("authorities.id"), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
