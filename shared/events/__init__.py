from shared.events.envelope import Contract, Envelope, Event, EventData

__all__ = ["Contract", "Envelope", "Event", "EventData"]
