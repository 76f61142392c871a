"""The registry service's contract: RegistryService in-process, RegistryClient over gRPC."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import errdefs
from images_svc.api import ProgressEvent

__all__ = ["AuthConfig", "DistributionInfo", "LoginResult", "Platform", "PullOptions", "PushOptions",
           "RegistryAPI", "decode_registry_auth"]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Docker's X-Registry-Auth payload; never stored."""

    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform; empty fields mean "the host's"."""

    os: str = ""
    architecture: str = ""
    variant: str = ""


@dataclass(frozen=True, slots=True)
class PullOptions:
    """docker pull: reference, tag (or digest), platform, -a."""

    ref: str
    tag: str = ""
    platform: Platform = Platform()
    auth: AuthConfig = AuthConfig()
    all_tags: bool = False


@dataclass(frozen=True, slots=True)
class PushOptions:
    """docker push: reference and tag ("" = every tag of the repository)."""

    ref: str
    tag: str = ""
    auth: AuthConfig = AuthConfig()


@dataclass(frozen=True, slots=True)
class DistributionInfo:
    """GET /distribution/{name}/json: what a reference names on its registry, and its platforms."""

    media_type: str
    digest: str
    size: int
    platforms: tuple[Platform, ...] = ()


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What docker login prints and may store."""

    status: str
    identity_token: str = ""


class RegistryAPI(Protocol):
    """Everything callers can ask of the registry service.

    Errors are errdefs classes: InvalidArgument (bad references, bad or oversized manifests,
    digest mismatches, unknown media types), NotFound (manifest unknown, no such local image
    to push), Unauthenticated (the registry refused the credentials, pull access denied),
    Unavailable (the registry cannot be reached or answers garbage).
    """

    def pull_image(self, opts: PullOptions) -> AsyncIterator[ProgressEvent]:
        """Pull an image; Docker's progress lines. Fails before the first event when the
        reference cannot be resolved (so the gateway can answer with a status)."""
        ...

    def push_image(self, opts: PushOptions) -> AsyncIterator[ProgressEvent]:
        """Push a local image; the last event's aux is {"Tag","Digest","Size"}."""
        ...

    async def login(self, auth: AuthConfig) -> LoginResult:
        """Check credentials against the registry in auth.server_address."""
        ...

    async def inspect_distribution(self, ref: str, auth: AuthConfig) -> DistributionInfo:
        """The descriptor ``ref`` names on its registry and the platforms it offers (no pull)."""
        ...


def decode_registry_auth(header: str | None) -> AuthConfig:
    """Decode an X-Registry-Auth header (base64url JSON; "" / "e30=" when anonymous).

    Raises:
        errdefs.InvalidArgument: the header is not base64 JSON.
    """
    if not header:
        return AuthConfig()
    raw = header.strip()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        doc = json.loads(data) if data.strip() else {}
    except (binascii.Error, ValueError):
        try:
            doc = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            raise errdefs.InvalidArgument("invalid X-Registry-Auth header") from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument("invalid X-Registry-Auth header")
    user, pw = str(doc.get("username") or ""), str(doc.get("password") or "")
    if not user and doc.get("auth"):
        try:
            user, _, pw = base64.b64decode(str(doc["auth"])).decode().partition(":")
        except (binascii.Error, ValueError):
            raise errdefs.InvalidArgument("invalid X-Registry-Auth header: bad auth") from None
    return AuthConfig(
        username=user, password=pw,
        identity_token=str(doc.get("identitytoken") or ""),
        registry_token=str(doc.get("registrytoken") or ""),
        server_address=str(doc.get("serveraddress") or ""),
    )
