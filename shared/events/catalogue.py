"""The event catalogue: an AsyncAPI 3.0 document generated from the contracts in
:mod:`shared.contracts` and the handlers each service registers. A test fails when the committed
copy (``docs/events/asyncapi.yaml``) is stale."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

import shared.contracts  # noqa: F401  (declares every contract)
from shared.events.envelope import Contract, Envelope

REF = "#/components/schemas/{model}"


def _message_name(event_type: str) -> str:
    return event_type.replace(".", "_")


def build_catalogue(consumers: Mapping[str, set[str]], exchange: str = "imi.events") -> dict[str, Any]:
    """The AsyncAPI document as a mapping: a channel per event type, who sends and who receives it."""
    contracts = sorted(
        Contract.registry.values(),
        key=lambda c: c.name,
    )
    _, schemas = models_json_schema(
        [(Envelope, "serialization"), *((c.data, "serialization") for c in contracts)], ref_template=REF
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for contract in contracts:
        name = _message_name(contract.name)
        messages[name] = {
            "name": contract.name,
            "title": contract.name,
            "summary": contract.summary,
            "contentType": "application/json",
            "payload": {
                "allOf": [
                    {"$ref": REF.format(model="Envelope")},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": contract.name},
                            "producer": {"const": contract.producer},
                            "data": {"$ref": REF.format(model=contract.data.__name__)},
                        },
                    },
                ]
            },
        }
        channels[name] = {
            "address": contract.name,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {"is": "routingKey", "exchange": {"name": exchange, "type": "topic", "durable": True}}
            },
        }
        operations[f"{contract.producer}_sends_{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": f"{contract.producer} publishes it through its outbox",
        }
        for service in sorted(s for s, types in consumers.items() if contract.name in types):
            operations[f"{service}_receives_{name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"{service} consumes it from its queue {exchange.split('.')[0]}.{service}",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IMI platform events",
            "version": "1.0.0",
            "description": (
                "Every event travels in the same envelope; `type` is `<producer>.<entity>.<verb>.v<major>` "
                "and is the routing key on the durable topic exchange. Consumers ignore unknown fields; "
                "within a major version only optional fields are added."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.get("$defs", {})},
    }


def render_catalogue(consumers: Mapping[str, set[str]]) -> str:
    return yaml.safe_dump(build_catalogue(consumers), sort_keys=False, allow_unicode=True, width=100)
