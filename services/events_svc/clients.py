"""EventsClient: EventsAPI over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from berthapi.events.v1 import events_pb2 as pb
from berthapi.events.v1 import events_pb2_grpc as pbg
from events_svc.convert import event_from_proto, event_to_proto
from events_svc.model import Event
from grpckit.client import stub
from grpckit.errors import translate_errors
from grpckit.types import filters_to_proto

__all__ = ["EventsClient"]


class EventsClient:
    """Implements EventsAPI by calling the Events gRPC service."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = stub(pbg.EventsStub, channel)

    @translate_errors
    async def publish(self, event: Event) -> None:
        await self._stub.Publish(pb.PublishRequest(envelope=event_to_proto(event)))

    @translate_errors
    async def subscribe(
        self, since_nano: int, until_nano: int, filters: dict[str, list[str]]
    ) -> AsyncIterator[Event]:
        req = pb.SubscribeRequest(since=since_nano, until=until_nano,
                                  filters=filters_to_proto(filters))
        async for msg in self._stub.Subscribe(req):
            yield event_from_proto(msg)
