"""Events the notifier service publishes (`notifier.<entity>.<verb>.v<major>`)."""

from shared.contracts.exchange import SnapshotRequest
from shared.events.envelope import Contract

REGISTRY_SNAPSHOT_REQUESTED = Contract(
    "notifier.registry_snapshot.requested.v1",
    SnapshotRequest,
    "The notifier asks the registry to republish every authority and user (its read model starts empty)",
)
