"""Pure conversions between Event and the events protobuf messages."""

from __future__ import annotations

from berthapi.events.v1 import events_pb2 as pb
from events_svc.model import Event

__all__ = ["event_from_proto", "event_to_proto"]


def event_to_proto(ev: Event) -> pb.Envelope:
    return pb.Envelope(
        topic=ev.topic, type=ev.type, action=ev.action,
        actor=pb.Actor(id=ev.actor_id, attributes=ev.attributes), scope=ev.scope,
        time=ev.time_nano // 1_000_000_000, time_nano=ev.time_nano, node_id=ev.node_id,
    )


def event_from_proto(msg: pb.Envelope) -> Event:
    return Event(type=msg.type, action=msg.action, actor_id=msg.actor.id,
                 attributes=dict(msg.actor.attributes), scope=msg.scope or "local",
                 time_nano=msg.time_nano, node_id=msg.node_id)
