"""Pure conversions between the registry service's records and its protobuf messages."""

from __future__ import annotations

from berthapi.registry.v1 import registry_pb2 as pb
from berthapi.types.v1 import types_pb2 as tpb
from registry_svc.api import AuthConfig, DistributionInfo, LoginResult, Platform, PullOptions, PushOptions

__all__ = [
    "auth_from_proto", "auth_to_proto", "distribution_from_proto", "distribution_to_proto",
    "login_from_proto", "login_to_proto", "pull_from_proto", "pull_to_proto", "push_from_proto",
    "push_to_proto",
]


def auth_to_proto(a: AuthConfig) -> pb.AuthConfig:
    return pb.AuthConfig(username=a.username, password=a.password, identity_token=a.identity_token,
                         registry_token=a.registry_token, server_address=a.server_address)


def auth_from_proto(m: pb.AuthConfig) -> AuthConfig:
    return AuthConfig(m.username, m.password, m.identity_token, m.registry_token, m.server_address)


def pull_to_proto(o: PullOptions) -> pb.PullImageRequest:
    p = o.platform
    return pb.PullImageRequest(
        ref=o.ref, tag=o.tag, all_tags=o.all_tags, auth=auth_to_proto(o.auth),
        platform=tpb.Platform(os=p.os, architecture=p.architecture, variant=p.variant),
    )


def pull_from_proto(m: pb.PullImageRequest) -> PullOptions:
    p = m.platform
    return PullOptions(ref=m.ref, tag=m.tag, all_tags=m.all_tags, auth=auth_from_proto(m.auth),
                       platform=Platform(p.os, p.architecture, p.variant))


def push_to_proto(o: PushOptions) -> pb.PushImageRequest:
    return pb.PushImageRequest(ref=o.ref, tag=o.tag, auth=auth_to_proto(o.auth))


def push_from_proto(m: pb.PushImageRequest) -> PushOptions:
    return PushOptions(ref=m.ref, tag=m.tag, auth=auth_from_proto(m.auth))


def login_to_proto(r: LoginResult) -> pb.LoginResponse:
    return pb.LoginResponse(status=r.status, identity_token=r.identity_token)


def login_from_proto(m: pb.LoginResponse) -> LoginResult:
    return LoginResult(status=m.status, identity_token=m.identity_token)


def distribution_to_proto(d: DistributionInfo) -> pb.InspectDistributionResponse:
    return pb.InspectDistributionResponse(
        descriptor=tpb.Descriptor(media_type=d.media_type, digest=d.digest, size=d.size),
        platforms=[tpb.Platform(os=p.os, architecture=p.architecture, variant=p.variant)
                   for p in d.platforms],
    )


def distribution_from_proto(m: pb.InspectDistributionResponse) -> DistributionInfo:
    d = m.descriptor
    return DistributionInfo(d.media_type, d.digest, d.size,
                            tuple(Platform(p.os, p.architecture, p.variant) for p in m.platforms))
