"""Conversions of the shared berthapi.types.v1 messages, used by every service's convert module."""

from __future__ import annotations

from berthapi.types.v1 import types_pb2 as tpb

__all__ = ["filters_from_proto", "filters_to_proto"]


def filters_to_proto(filters: dict[str, list[str]]) -> tpb.Filters:
    return tpb.Filters(filters={k: tpb.FilterValues(values=v) for k, v in filters.items()})


def filters_from_proto(msg: tpb.Filters) -> dict[str, list[str]]:
    return {k: list(v.values) for k, v in msg.filters.items()}
