"""The images service's contract, implemented in-process by ImagesService and remotely by ImagesClient."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from images_svc.model import DeleteItem, HistoryItem, ImageRecord

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

    Errors are errdefs classes: NotFound ("No such image: <ref>"), InvalidArgument (bad
    references, bad archives, digest mismatches), Conflict (rmi of an image in use or
    referenced in several repositories without force).
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
