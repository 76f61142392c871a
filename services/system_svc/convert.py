"""Pure conversions between system reports and their protobuf messages."""

from __future__ import annotations

from dataclasses import asdict, fields

from berthapi.system.v1 import system_pb2 as pb
from system_svc.service import InfoReport, VersionReport

__all__ = ["info_from_proto", "info_to_proto", "version_from_proto", "version_to_proto"]


def version_to_proto(v: VersionReport) -> pb.VersionResponse:
    return pb.VersionResponse(**asdict(v))


def version_from_proto(m: pb.VersionResponse) -> VersionReport:
    return VersionReport(**{f.name: getattr(m, f.name) for f in fields(VersionReport)})


def info_to_proto(i: InfoReport) -> pb.InfoResponse:
    return pb.InfoResponse(**asdict(i))


def info_from_proto(m: pb.InfoResponse) -> InfoReport:
    values = {f.name: getattr(m, f.name) for f in fields(InfoReport)}
    for key in ("runtimes", "registry_mirrors", "insecure_registries", "warnings"):
        values[key] = list(values[key])
    values["services"] = dict(values["services"])
    return InfoReport(**values)
