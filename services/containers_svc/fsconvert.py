"""Pure conversions for diff/export/archive between the containers API and its proto messages."""

from __future__ import annotations

from berthapi.containers.v1 import containers_pb2 as pb
from containers_svc.api import PathStat
from images_svc.model import Change, ChangeKind

__all__ = ["changes_from_proto", "changes_to_proto", "stat_from_proto", "stat_to_proto"]


def stat_to_proto(s: PathStat) -> pb.PathStat:
    return pb.PathStat(name=s.name, size=s.size, mode=s.mode, mtime=s.mtime, link_target=s.link_target)


def stat_from_proto(m: pb.PathStat) -> PathStat:
    return PathStat(m.name, m.size, m.mode, m.mtime, m.link_target)


def changes_to_proto(changes: list[Change]) -> pb.ContainerChangesResponse:
    return pb.ContainerChangesResponse(
        changes=[pb.Change(path=c.path, kind=f"CHANGE_KIND_{c.kind.name}") for c in changes]
    )


def changes_from_proto(m: pb.ContainerChangesResponse) -> list[Change]:
    return [Change(c.path, ChangeKind(c.kind)) for c in m.changes]
