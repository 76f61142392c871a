"""The images service's contract, implemented in-process by ImagesService and remotely by ImagesClient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from images_svc.model import Change, DeleteItem, HistoryItem, ImageRecord, Snapshot

__all__ = ["ImagesAPI", "ImportOptions", "ProgressEvent", "PruneReport"]


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
