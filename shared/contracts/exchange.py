"""Events the exchange service publishes (`exchange.<entity>.<verb>.v<major>`)."""

from shared.events.envelope import Contract, EventData


class SnapshotRequest(EventData):
    """A consumer that starts empty, or suspects a gap, asks the registry to send its state again."""

    reason: str


REGISTRY_SNAPSHOT_REQUESTED = Contract(
    "exchange.registry_snapshot.requested.v1",
    SnapshotRequest,
    "The exchange asks the registry to republish every authority and user (its read model starts empty)",
)
