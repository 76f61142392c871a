"""EventsServicer: the gRPC shim over EventsAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from berthapi.events.v1 import events_pb2 as pb
from berthapi.events.v1 import events_pb2_grpc as pbg
from events_svc.bus import EventsAPI
from events_svc.convert import event_from_proto, event_to_proto
from grpckit.types import filters_from_proto

__all__ = ["EventsServicer", "add_to_server"]

add_to_server = pbg.add_EventsServicer_to_server


class EventsServicer(pbg.EventsServicer):
    """Serves the Events gRPC service."""

    def __init__(self, api: EventsAPI) -> None:
        self._api = api

    async def Subscribe(self, req: pb.SubscribeRequest, ctx: Any) -> AsyncIterator[pb.Envelope]:
        async for ev in self._api.subscribe(req.since, req.until, filters_from_proto(req.filters)):
            yield event_to_proto(ev)

    async def Publish(self, req: pb.PublishRequest, ctx: Any) -> pb.PublishResponse:
        await self._api.publish(event_from_proto(req.envelope))
        return pb.PublishResponse()
