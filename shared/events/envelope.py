"""The envelope every event travels in (ARCHITECTURE.md, Events).

``type`` is ``<producer>.<entity>.<past-tense verb>.v<major>`` and doubles as the routing key.
Consumers ignore unknown fields; within a major version only optional fields are added.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_PATTERN = re.compile(
    r"^(registry|exchange|notifier|retention)\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9][0-9]*$"
)


class EventData(BaseModel):
    """Base of every event payload: unknown fields are ignored so producers can add optional ones."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Envelope(BaseModel):
    """What goes on the wire. ``data`` stays a plain mapping here; a contract gives it its type."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    occurred_at: datetime
    producer: str
    correlation_id: str
    causation_id: str | None = None
    data: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _type_is_well_formed(cls, value: str) -> str:
        if not EVENT_TYPE_PATTERN.match(value):
            raise ValueError(f"event type {value!r} is not <producer>.<entity>.<verb>.v<major>")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


D = TypeVar("D", bound=EventData)


class Event(BaseModel, Generic[D]):
    """An envelope whose ``data`` has been validated against its contract."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID
    type: str
    occurred_at: datetime
    producer: str
    correlation_id: str
    causation_id: str | None = None
    data: D


class Contract(Generic[D]):
    """Binds an event type name to the model of its data."""

    registry: ClassVar[dict[str, Contract[Any]]] = {}

    def __init__(self, name: str, data: type[D], summary: str, *, register: bool = True) -> None:
        """``register=False`` keeps a contract out of the catalogue (tests declare their own)."""
        if not EVENT_TYPE_PATTERN.match(name):
            raise ValueError(f"event type {name!r} is not <producer>.<entity>.<verb>.v<major>")
        if register and name in Contract.registry:
            raise ValueError(f"event type {name!r} is declared twice")
        self.name = name
        self.data = data
        self.summary = summary
        self.producer = name.split(".", 1)[0]
        if register:
            Contract.registry[name] = self

    def __repr__(self) -> str:
        return f"Contract({self.name!r})"

    def parse(self, envelope: Envelope) -> Event[D]:
        """The envelope with its data validated by this contract."""
        return Event(
            id=envelope.id,
            type=envelope.type,
            occurred_at=envelope.occurred_at,
            producer=envelope.producer,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.causation_id,
            data=self.data.model_validate(envelope.data),
        )
