"""docker diff, docker export and docker cp (archive HEAD/GET/PUT) for the containers service.

The filesystem work is ``containers_svc.fsview`` (fd-based, never leaves the container); this
module picks the view, makes sure the rootfs is mounted, streams through worker threads and
publishes Docker's events: ``archive-path`` (GET), ``extract-to-dir`` (PUT), ``export``. A
stopped container's snapshot is mounted for the operation under the container's lock (so it
cannot start meanwhile) and unmounted afterwards if the container still is not running.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread

import errdefs
from containers_svc.api import ContainerRecord, PathStat
from containers_svc.fsview import ContainerFS, ExtractOptions, FSMount, StatResult, rfc3339_nano
from containers_svc.rootfs import lookup_user
from images_svc.api import ImagesAPI
from images_svc.model import Change, ChangeKind
from streamio import ChunkReader

__all__ = ["ContainerFiles", "filter_changes", "fs_mounts"]

log = logging.getLogger(__name__)

# What moby's init layer holds (daemon/initlayer): the runtime's mount points, never a change.
INIT_PATHS = frozenset({
    "/dev", "/dev/pts", "/dev/shm", "/dev/console", "/proc", "/sys", "/.dockerenv",
    "/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/etc/mtab",
})  # fmt: skip
_ETC_FILES = (("/etc/resolv.conf", "resolv_conf_path"), ("/etc/hostname", "hostname_path"),
              ("/etc/hosts", "hosts_path"))  # fmt: skip

Lookup = Callable[[str], tuple[ContainerRecord, anyio.Lock]]
Publish = Callable[[str, str], Awaitable[None]]


def filter_changes(changes: list[Change]) -> list[Change]:
    """Drop what Docker's init layer hides (runtime mount points) and parents changed only by them."""
    hidden = [c.path for c in changes if c.path in INIT_PATHS]
    kept = [c for c in changes if c.path not in INIT_PATHS]
    if not hidden:
        return kept
    ancestors = {posixpath.dirname(p) for p in hidden} - {"/"}
    out = []
    for c in kept:
        if c.kind == ChangeKind.MODIFIED and c.path in ancestors:
            prefix = c.path + "/"
            if not any(o.path.startswith(prefix) for o in kept):
                continue  # e.g. /etc, touched only by the runtime creating /etc/hostname
        out.append(c)
    return out


def fs_mounts(rec: ContainerRecord) -> list[FSMount]:
    """The container's mounts as docker cp sees them: volumes, binds and the /etc files.

    tmpfs mounts are left out, as in Docker (their content lives in the container only).
    """
    out: list[FSMount] = []
    dests: set[str] = set()
    for mp in rec.mounts:
        dests.add(mp.get("Destination", ""))
        if mp.get("Type") in ("bind", "volume") and mp.get("Source"):
            out.append(FSMount(mp["Destination"], mp["Source"], bool(mp.get("RW", True))))
    ro = bool(rec.host_config.get("ReadonlyRootfs"))
    for dest, attr in _ETC_FILES:
        src = getattr(rec, attr, "")
        if dest not in dests and src and os.path.exists(src):
            out.append(FSMount(dest, src, not ro))
    return out


def _path_stat(st: StatResult) -> PathStat:
    return PathStat(st.name, st.size, st.mode, rfc3339_nano(st.mtime_ns), st.link_target)


def _not_found(path: str, ref: str) -> errdefs.NotFound:
    return errdefs.NotFound(f"Could not find the file {path} in container {ref}")


def _os_error(e: OSError, path: str, ref: str) -> errdefs.EngineError:
    """moby: IsNotExist -> 404 "Could not find the file"; the rest a 500 with the errno text."""
    if e.errno == errno.ENOENT:
        return _not_found(path, ref)
    return errdefs.Internal(f"{path}: {e.strerror or e}")


def _preserve_trailing(cleaned: str, original: str) -> str:
    """go-archive PreserveTrailingDotOrSeparator."""
    if original.endswith("/.") and not cleaned.endswith("/."):
        return cleaned.rstrip("/") + "/." if cleaned != "/" else "/."
    if original.endswith("/") and not cleaned.endswith("/"):
        return cleaned + "/"
    return cleaned


def abs_archive_path(path: str) -> str:
    """Docker's absPath for GET: Join("/", path) (lexical) keeping a trailing "/" or "/."."""
    return _preserve_trailing(posixpath.normpath("/" + path).replace("//", "/"), path)


def _container_ids(fs: ContainerFS, user: str) -> tuple[int, int]:
    """Config.User as (uid, gid) from the container's own passwd/group files (docker cp -a).

    The two files are read through the fd-safe view and parsed by the same code as at start,
    from a private copy, so a container swapping /etc for a link never makes berth read the host's.
    """
    with tempfile.TemporaryDirectory(prefix="berth-ids-") as tmp:
        os.mkdir(os.path.join(tmp, "etc"))
        for name in ("passwd", "group"):
            data = fs.read_file(f"/etc/{name}")
            if data is not None:
                with open(os.path.join(tmp, "etc", name), "wb") as f:
                    f.write(data)
        u = lookup_user(tmp, user)
    return u.uid, u.gid


async def _drain(gen: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """Run a blocking chunk generator step by step in worker threads."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, gen, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(gen.close)


class ContainerFiles:
    """diff/export/archive operations; ``lookup`` gives the live record and its lock.

    Errors: errdefs.NotFound ("No such container: x", "Could not find the file <path> in
    container <ref>"), InvalidArgument ("path cannot be empty", "extraction point is not a
    directory", "mounted volume is marked read-only", "container rootfs is marked read-only",
    hostile archives), Internal (Docker's 500s).
    """

    def __init__(self, images: ImagesAPI, lookup: Lookup, publish: Publish) -> None:
        self._images = images
        self._lookup = lookup
        self._publish = publish

    async def _event(self, cid: str, action: str) -> None:
        try:
            await self._publish(cid, action)
        except errdefs.EngineError as e:  # removed meanwhile: the operation still succeeded
            log.debug("event %s of %s: %s", action, cid, e)

    @asynccontextmanager
    async def _rootfs(self, ref: str) -> AsyncIterator[tuple[ContainerRecord, str]]:
        """The record and its mounted rootfs (merged dir) for the duration of the block."""
        rec, lock = self._lookup(ref)
        snap = await self._images.get_snapshot(rec.id)
        if snap.mounted:
            yield rec, snap.merged_dir
            return
        async with lock:
            snap = await self._images.mount_snapshot(rec.id)
            try:
                yield rec, snap.merged_dir
            finally:
                with anyio.CancelScope(shield=True):
                    if not (rec.state.running or rec.state.restarting):
                        try:
                            await self._images.unmount_snapshot(rec.id)
                        except errdefs.EngineError as e:
                            log.warning("unmounting the rootfs of %s: %s", rec.id, e)

    # --- diff / export -------------------------------------------------------------------------

    async def changes(self, ref: str) -> list[Change]:
        rec, _ = self._lookup(ref)
        return filter_changes(await self._images.snapshot_changes(rec.id))

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        rec, _ = self._lookup(ref)
        if rec.state.dead:
            raise errdefs.Conflict(f"You cannot export container {rec.id} which is Dead")
        async with self._rootfs(ref) as (rec, rootfs):
            fs = await anyio.to_thread.run_sync(ContainerFS, rootfs)
            try:
                async for chunk in _drain(fs.iter_export()):
                    yield chunk
            finally:
                fs.close()
        await self._event(rec.id, "export")

    # --- archive -------------------------------------------------------------------------------

    async def stat_path(self, ref: str, path: str) -> PathStat:
        if not path:
            raise errdefs.InvalidArgument("path cannot be empty")
        async with self._rootfs(ref) as (rec, rootfs):
            def work() -> StatResult:
                with ContainerFS(rootfs, fs_mounts(rec)) as fs:
                    return fs.stat(path)

            try:
                st = await anyio.to_thread.run_sync(work)
            except OSError as e:
                raise _os_error(e, path, ref) from None
        return _path_stat(st)

    async def get_archive(self, ref: str, path: str) -> AsyncIterator[PathStat | bytes]:
        """First the stat of ``path``, then the tar bytes (Docker's rules: see fsview)."""
        if not path:
            raise errdefs.InvalidArgument("path cannot be empty")
        abs_path = abs_archive_path(path)
        async with self._rootfs(ref) as (rec, rootfs):
            fs = await anyio.to_thread.run_sync(ContainerFS, rootfs, fs_mounts(rec))
            try:
                try:
                    st = await anyio.to_thread.run_sync(fs.stat, abs_path)
                except OSError as e:
                    raise _os_error(e, path, ref) from None
                yield _path_stat(st)
                await self._event(rec.id, "archive-path")
                try:
                    async for chunk in _drain(fs.iter_archive(abs_path, st)):
                        yield chunk
                except OSError as e:
                    raise _os_error(e, path, ref) from None
            finally:
                fs.close()

    async def put_archive(
        self, ref: str, path: str, data: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> None:
        if not path:
            raise errdefs.InvalidArgument("path cannot be empty")
        async with self._rootfs(ref) as (rec, rootfs):
            user = str(rec.config.get("User") or "")
            read_only = bool(rec.host_config.get("ReadonlyRootfs"))

            def work() -> None:
                with ContainerFS(rootfs, fs_mounts(rec)) as fs:
                    # moby: EvalSymlinks(Join("/", path)), the last element included.
                    r = fs.resolve(posixpath.normpath("/" + path), follow_last=True)
                    try:
                        if r.fd < 0:
                            raise FileNotFoundError(errno.ENOENT, "no such file", path)
                        if not os.path.isdir(f"/proc/self/fd/{r.fd}"):
                            raise errdefs.InvalidArgument("extraction point is not a directory")
                        if r.mount is not None and not r.mount.rw:
                            raise errdefs.InvalidArgument("mounted volume is marked read-only")
                        if r.mount is None and read_only:
                            raise errdefs.InvalidArgument("container rootfs is marked read-only")
                        dest = r.path
                    finally:
                        r.close()
                    chown = _container_ids(fs, user) if copy_uid_gid and user else None
                    opts = ExtractOptions(no_overwrite_dir_non_dir, chown)
                    fs.extract(ChunkReader(data, batch=4 << 20), dest, opts)  # type: ignore[arg-type]

            try:
                await anyio.to_thread.run_sync(work)
            except OSError as e:
                raise _os_error(e, path, ref) from None
        await self._event(rec.id, "extract-to-dir")
