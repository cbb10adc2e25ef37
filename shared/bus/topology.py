"""Names on the broker. One durable topic exchange for every event; per consuming service a
quorum queue bound to the exact event types it handles, one delay queue per retry step (its
messages expire back into the service's queue) and a dead-letter queue ops can inspect and replay."""

from __future__ import annotations

from dataclasses import dataclass

from shared.bus.transport import DEFAULT_EXCHANGE, Binding, QueueSpec, Topology


@dataclass(frozen=True)
class ServiceQueues:
    namespace: str
    service: str
    retry_delays: tuple[float, ...]

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def queue(self) -> str:
        return f"{self.namespace}.{self.service}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    def retry_queue(self, attempt: int) -> str:
        """The delay queue a message waits in before its ``attempt``-th retry (1-based)."""
        return f"{self.queue}.retry.{self._delay_ms(attempt)}"

    def _delay_ms(self, attempt: int) -> int:
        return max(1, round(self.retry_delays[attempt - 1] * 1000))

    @property
    def max_attempts(self) -> int:
        """Handling attempts before a message is dead-lettered: the first one plus one per delay."""
        return len(self.retry_delays) + 1

    def exchange_topology(self) -> Topology:
        return Topology(topic_exchanges=(self.events_exchange,))

    def consumer_topology(self, event_types: set[str]) -> Topology:
        retry_queues = {
            self.retry_queue(attempt): QueueSpec(
                name=self.retry_queue(attempt),
                message_ttl_ms=self._delay_ms(attempt),
                dead_letter_exchange=DEFAULT_EXCHANGE,
                dead_letter_routing_key=self.queue,
            )
            for attempt in range(1, len(self.retry_delays) + 1)
        }
        return Topology(
            topic_exchanges=(self.events_exchange,),
            queues=(
                # Anything the broker itself rejects from the main queue still ends up in the DLQ.
                QueueSpec(
                    name=self.queue,
                    dead_letter_exchange=DEFAULT_EXCHANGE,
                    dead_letter_routing_key=self.dead_letter_queue,
                ),
                QueueSpec(name=self.dead_letter_queue),
                *retry_queues.values(),
            ),
            bindings=tuple(
                Binding(queue=self.queue, exchange=self.events_exchange, routing_key=event_type)
                for event_type in sorted(event_types)
            ),
        )
