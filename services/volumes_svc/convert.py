"""Pure conversions between the volumes service's records and its protobuf messages."""

from __future__ import annotations

from berthapi.volumes.v1 import volumes_pb2 as pb
from grpckit.types import filters_from_proto, filters_to_proto
from volumes_svc.model import AcquireResult, PruneReport, Volume

__all__ = [
    "acquire_from_proto", "acquire_to_proto", "filters_from_proto", "filters_to_proto",
    "prune_from_proto", "prune_to_proto", "volume_from_proto", "volume_to_proto",
]


def volume_to_proto(v: Volume) -> pb.Volume:
    msg = pb.Volume(
        name=v.name, driver=v.driver, mountpoint=v.mountpoint, created_at=v.created,
        labels=v.labels, scope="local", options=v.options, anonymous=v.anonymous,
        node_id=v.node_id,
    )
    if v.size >= 0 or v.ref_count >= 0:
        msg.usage_data.CopyFrom(pb.UsageData(size=v.size, ref_count=v.ref_count))
    return msg


def volume_from_proto(msg: pb.Volume) -> Volume:
    usage = msg.HasField("usage_data")
    return Volume(
        name=msg.name, driver=msg.driver, mountpoint=msg.mountpoint, created=msg.created_at,
        node_id=msg.node_id, options=dict(msg.options), labels=dict(msg.labels),
        anonymous=msg.anonymous, size=msg.usage_data.size if usage else -1,
        ref_count=msg.usage_data.ref_count if usage else -1,
    )


def prune_to_proto(rep: PruneReport) -> pb.PruneVolumesResponse:
    return pb.PruneVolumesResponse(deleted=rep.deleted, space_reclaimed=rep.space_reclaimed)


def prune_from_proto(msg: pb.PruneVolumesResponse) -> PruneReport:
    return PruneReport(deleted=list(msg.deleted), space_reclaimed=msg.space_reclaimed)


def acquire_to_proto(res: AcquireResult) -> pb.AcquireVolumeResponse:
    return pb.AcquireVolumeResponse(volume=volume_to_proto(res.volume),
                                    mountpoint=res.mountpoint, created=res.created)


def acquire_from_proto(msg: pb.AcquireVolumeResponse) -> AcquireResult:
    return AcquireResult(volume=volume_from_proto(msg.volume), mountpoint=msg.mountpoint,
                         created=msg.created)
