"""Event contracts, one module per producer (ARCHITECTURE.md, Events). Importing this package
declares every contract, which is what the event catalogue is generated from."""

from shared.contracts import exchange, notifier, registry, retention

__all__ = ["exchange", "notifier", "registry", "retention"]
