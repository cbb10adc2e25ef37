"""The four services. Each owns its database and talks to the others only through events."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from shared.settings import SERVICES

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shared.service import ServiceDefinition
    from shared.settings import Settings


def load_definition(service: str) -> ServiceDefinition:
    """The definition of ``service`` (registry, exchange, notifier or retention)."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    definition: ServiceDefinition = import_module(f"services.{service}.app").definition
    return definition


def create_app(service: str, settings: Settings | None = None, **overrides: Any) -> FastAPI:
    """A ready-to-serve FastAPI app for one service."""
    from shared.service import create_service_app
    from shared.settings import Settings

    return create_service_app(load_definition(service), settings or Settings(), **overrides)
