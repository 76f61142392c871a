"""The volumes service's contract, implemented in-process by VolumesService and remotely by VolumesClient."""

from __future__ import annotations

from typing import Protocol

from volumes_svc.model import AcquireResult, PruneReport, Volume

__all__ = ["VolumesAPI"]


class VolumesAPI(Protocol):
    """Everything callers can ask of the volumes service.

    Errors are errdefs classes with moby's wording: NotFound ("get <name>: no such volume"),
    InvalidArgument (bad names, driver options and filters), Conflict ("remove <name>: volume
    is in use - [<container ids>]", "volume name must be unique"), NotImplemented_ (drivers
    other than local).
    """

    async def create_volume(
        self, name: str, driver: str, driver_opts: dict[str, str], labels: dict[str, str]
    ) -> Volume:
        """docker volume create; returns the existing volume when ``name`` exists (moby).

        An empty ``name`` makes an anonymous volume with a generated 64-hex name.
        """
        ...

    async def get_volume(self, name: str) -> Volume:
        """docker volume inspect (usage not computed)."""
        ...

    async def list_volumes(self, filters: dict[str, list[str]], usage: bool = False) -> list[Volume]:
        """docker volume ls with Docker's filters (dangling, driver, label, name), by name.

        Args:
            filters: the decoded ``filters`` query parameter.
            usage: also compute size and ref_count (system df -v); slower.
        """
        ...

    async def remove_volume(self, name: str, force: bool = False) -> None:
        """docker volume rm; ``force`` ignores a missing volume but never removes one in use."""
        ...

    async def prune_volumes(self, filters: dict[str, list[str]]) -> PruneReport:
        """Remove unreferenced local volumes without mount options.

        Only anonymous ones unless the filters hold ``all=true`` (the gateway adds it below API
        1.42); ``label``/``label!`` narrow the set further.
        """
        ...

    async def acquire_volume(
        self,
        name: str,
        container_id: str,
        *,
        driver: str = "",
        driver_opts: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        copy_up_source: str = "",
        copy_up_path: str = "",
    ) -> AcquireResult:
        """Record that ``container_id`` uses volume ``name`` and return where to mount it.

        Creates the volume first when it does not exist (``docker run -v name:/p``; an empty
        ``name`` makes an anonymous one). Mounts tmpfs and bind volumes on first use.
        Idempotent per (volume, container). When ``copy_up_source`` (a mounted rootfs) is
        given and the volume is empty and used by no other container, the content of
        ``copy_up_path`` inside it (resolved without leaving the rootfs) is copied in.

        Raises:
            errdefs.InvalidArgument: bad name, options or container id.
        """
        ...

    async def release_volume(self, name: str, container_id: str, remove: bool = False) -> bool:
        """Drop ``container_id``'s reference; unmount a tmpfs/bind volume at its last release.

        ``remove`` also deletes the volume when it is anonymous and now unreferenced
        (``docker rm -v``, ``run --rm``). Releasing an absent reference is a no-op.

        Returns:
            Whether the volume was deleted.
        """
        ...
