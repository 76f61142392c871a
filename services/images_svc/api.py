"""The images service's contract, implemented in-process by ImagesService and remotely by ImagesClient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from images_svc.model import Change, DeleteItem, HistoryItem, ImageRecord, Snapshot

__all__ = [
    "BuildEvent", "BuildOptions", "CommitOptions", "ImagesAPI", "ImportOptions", "ProgressEvent",
    "PruneReport",
]


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """Options of docker import."""

    repo: str = ""
    tag: str = ""
    changes: list[str] = field(default_factory=list)
    message: str = ""
    platform_os: str = ""
    platform_arch: str = ""
    platform_variant: str = ""


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One line of a progress stream (Docker's jsonmessage)."""

    id: str = ""
    status: str = ""
    stream: str = ""
    current: int = 0
    total: int = 0
    aux_json: bytes = b""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune removed."""

    deleted: list[DeleteItem]
    space_reclaimed: int


# -- commit and build (issues 3 and 7) --


@dataclass(frozen=True, slots=True)
class CommitOptions:
    """docker commit, as the containers service hands it over."""

    container_config: dict[str, Any] = field(default_factory=dict)  # the container's Config
    config: dict[str, Any] | None = None  # Config the client sent; None = the container's
    repo: str = ""
    tag: str = ""
    comment: str = ""
    author: str = ""
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """POST /build's query, decoded."""

    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str | None] = field(default_factory=dict)  # None: from the environment
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    quiet: bool = False
    rm: bool = True
    force_rm: bool = False
    network_mode: str = ""
    extra_hosts: list[str] = field(default_factory=list)
    cpuset_cpus: str = ""
    memory: int = 0
    memswap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    shm_size: int = 0
    platform: str = ""
    registry_config_json: bytes = b""
    cache_from: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BuildEvent:
    """One message of the classic builder's stream; ``error`` set on the last one of a failure.

    An event with no field set is a keepalive, sent while a step is quiet.
    """

    stream: str = ""
    aux_json: bytes = b""
    error: str = ""
    error_code: int = 0
    status: str = ""
    id: str = ""


class ImagesAPI(Protocol):
    """Everything callers can ask of the images service.

    Errors are errdefs classes: NotFound ("No such image: <ref>", "No such snapshot: <key>"),
    InvalidArgument (bad references, bad archives, digest mismatches, snapshot keys that are not
    64 lowercase hex), Conflict (rmi of an image in use by a snapshot or referenced in several
    repositories without force), AlreadyExists (a snapshot key taken).
    """

    async def get_image(self, ref: str) -> ImageRecord:
        """Resolve ref (name[:tag], name@digest, id, id prefix) to one image."""
        ...

    async def list_images(self, filters: dict[str, list[str]], all: bool) -> list[ImageRecord]:
        """List images matching Docker's filters (dangling, reference, label, before, since)."""
        ...

    def import_image(
        self, opts: ImportOptions, data: AsyncIterator[bytes]
    ) -> AsyncIterator[ProgressEvent]:
        """Make a one-layer image from a rootfs tarball; the last event's aux holds the id."""
        ...

    def load_images(self, data: AsyncIterator[bytes], quiet: bool) -> AsyncIterator[ProgressEvent]:
        """Load a docker-archive or OCI layout; emits "Loaded image: ..." per image."""
        ...

    def save_images(self, refs: list[str]) -> AsyncIterator[bytes]:
        """Stream a docker-archive (Docker 25+ layout) holding the images."""
        ...

    async def tag_image(self, ref: str, repo: str, tag: str) -> None:
        """Point repo:tag at the image ref names."""
        ...

    async def remove_image(self, ref: str, force: bool, noprune: bool) -> list[DeleteItem]:
        """docker rmi with Docker's rules."""
        ...

    async def image_history(self, ref: str) -> list[HistoryItem]:
        """History rows, newest first."""
        ...

    async def prune_images(self, filters: dict[str, list[str]]) -> PruneReport:
        """Remove dangling (or all unused with dangling=false) images."""
        ...

    async def prepare_snapshot(self, key: str, image: str, labels: dict[str, str]) -> Snapshot:
        """Make container ``key``'s rootfs snapshot over ``image``'s layers (not mounted).

        Raises:
            errdefs.InvalidArgument: ``key`` is not 64 lowercase hex.
            errdefs.NotFound: no such image (or one of its layers is missing on disk).
            errdefs.AlreadyExists: a snapshot ``key`` exists.
        """
        ...

    async def get_snapshot(self, key: str) -> Snapshot:
        """Return snapshot ``key``; NotFound "No such snapshot: <key>"."""
        ...

    async def list_snapshots(self) -> list[Snapshot]:
        """Return every snapshot of this node, ordered by key."""
        ...

    async def remove_snapshot(self, key: str) -> None:
        """Unmount and delete snapshot ``key`` with its upper dir; the image stays."""
        ...

    async def mount_snapshot(self, key: str) -> Snapshot:
        """Mount the overlay at the snapshot's merged dir; idempotent."""
        ...

    async def unmount_snapshot(self, key: str) -> Snapshot:
        """Unmount the snapshot's merged dir; idempotent."""
        ...

    async def snapshot_changes(self, key: str) -> list[Change]:
        """docker diff of the snapshot: its upper dir against the image's layers."""
        ...

    # -- commit and build (issues 3 and 7) --

    async def commit_image(self, key: str, opts: CommitOptions) -> str:
        """Make an image of snapshot ``key``'s upper dir over its image; returns the new id.

        Raises:
            errdefs.NotFound: ``No such snapshot: <key>``.
            errdefs.InvalidArgument: bad ``changes`` or repository name.
        """
        ...

    def build(self, opts: BuildOptions, context: AsyncIterator[bytes]) -> AsyncIterator[BuildEvent]:
        """Run a classic Dockerfile build over the context tar stream.

        Resource handling:
            Intermediate containers, temporary snapshots and the unpacked context are removed
            when the build ends, fails or the caller stops iterating (client gone).

        Error handling:
            A build failure ends the stream with a BuildEvent whose ``error`` is set; errors
            raised instead are request errors (bad options) found before the first event.
        """
        ...
