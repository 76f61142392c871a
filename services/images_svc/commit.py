"""docker commit: a snapshot's upper dir as an OCI layer, recorded as an image over the snapshot's image.

The upper dir holds overlayfs whiteouts; the layer tar carries OCI ones instead: a 0/0 character
device becomes an empty ``.wh.<name>`` file and a directory marked
``trusted.overlay.opaque=y`` gets a ``.wh..wh..opq`` entry. Empty ``/etc/hosts``,
``/etc/hostname`` and ``/etc/resolv.conf`` are the mount points of the engine's bind mounts and
are left out, as Docker keeps them out of a container's diff.

Crash safety: the blob is ingested (verify, fsync, rename), the layer unpacked into a temp dir
and renamed into place, and only then is the image recorded in one transaction; a crash before
that leaves an unreferenced blob and an unrecorded layer, which the service's reconcile removes.

NOTE: this module and images_svc.build use ImagesService's private record helpers
(``_commit_image``, ``_store_image``, ``_store``, ``_snapshots``): they are the service's own
code, split out by topic, not its callers.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

import errdefs
from dockerapi.platforms import host_arch
from dockerapi.timefmt import now_rfc3339
from images_svc.api import CommitOptions
from images_svc.changes import VALID_CHANGE_COMMANDS
from images_svc.content import BlobWriter
from images_svc.layers import chain_ids_from
from images_svc.model import ImageRecord, LayerRecord

if TYPE_CHECKING:
    from images_svc.service import ImagesService

__all__ = ["NewLayer", "add_layer", "commit_snapshot", "image_config", "write_diff_tar"]

MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_OPAQUE = "trusted.overlay.opaque"
_MOUNT_TARGETS = frozenset({"etc/hosts", "etc/hostname", "etc/resolv.conf"})
DOCKER_VERSION = "28.2.2"  # what "docker_version" says in configs berth writes


class _Sink:
    """A write-only file object over a BlobWriter (tarfile's stream mode needs only write)."""

    def __init__(self, w: BlobWriter) -> None:
        self._w = w

    def write(self, data: bytes) -> int:
        return self._w.write(data)


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


def write_diff_tar(upper: Path, out: IO[bytes] | _Sink) -> None:
    """Tar ``upper`` (an overlay upper dir) with OCI whiteouts into ``out``. Blocking."""
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      encoding="utf-8", errors="surrogateescape") as tf:
        _walk(tf, str(upper), "", links)


def _walk(tf: tarfile.TarFile, root: str, rel: str, links: dict[tuple[int, int], str]) -> None:
    full_dir = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(full_dir), key=os.fsencode):
        r = f"{rel}/{name}" if rel else name
        full = os.path.join(root, r)
        st = os.lstat(full)
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            ti = _tarinfo(f"{rel}/.wh.{name}" if rel else f".wh.{name}", st)
            ti.mode = 0
            tf.addfile(ti)
            continue
        if r in _MOUNT_TARGETS and stat.S_ISREG(mode) and st.st_size == 0:
            continue
        if stat.S_ISDIR(mode):
            ti = _tarinfo(r, st)
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
            try:
                opaque = os.getxattr(full, _OPAQUE, follow_symlinks=False) == b"y"
            except OSError:
                opaque = False
            if opaque:
                wh = _tarinfo(f"{r}/.wh..wh..opq", st)
                wh.type, wh.mode = tarfile.REGTYPE, 0
                tf.addfile(wh)
            _walk(tf, root, r, links)
            continue
        ti = _tarinfo(r, st)
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
                tf.addfile(ti)
                continue
            links[key] = r
            ti.size = st.st_size
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                tf.addfile(ti, f)
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(full)
            tf.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            tf.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            tf.addfile(ti)
        # sockets are not carried in layers


@dataclass(frozen=True, slots=True)
class NewLayer:
    """A layer just ingested and unpacked."""

    media_type: str
    blob: str
    blob_size: int
    diff_id: str
    chain_id: str
    parent_chain: str
    size: int

    def record(self, node_id: str) -> LayerRecord:
        return LayerRecord(self.chain_id, self.diff_id, self.parent_chain, self.size, node_id)


async def add_layer(
    svc: ImagesService, parent_chain: str, produce: Callable[[_Sink], None]
) -> NewLayer:
    """Ingest the uncompressed tar ``produce`` writes, then unpack it over ``parent_chain``."""
    content = svc.content

    def write() -> tuple[str, int]:
        with content.open_writer() as w:
            produce(_Sink(w))
            return w.commit()

    blob, size = await anyio.to_thread.run_sync(write)
    chain = blob if not parent_chain else chain_ids_from(parent_chain, blob)
    info = await svc.layers.unpack(chain, parent_chain, content.blob_path(blob), blob)
    return NewLayer(MEDIA_OCI_LAYER, blob, size, blob, chain, parent_chain, info.size)


def merge_config(user: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """moby's commit merge(): fields the user's config leaves empty come from the container's."""
    out = dict(user)
    if not out.get("User"):
        out["User"] = container.get("User", "")
    ports = {**(container.get("ExposedPorts") or {}), **(out.get("ExposedPorts") or {})}
    if ports:
        out["ExposedPorts"] = ports
    env = list(out.get("Env") or [])
    keys = {e.split("=", 1)[0] for e in env}
    env += [e for e in container.get("Env") or [] if e.split("=", 1)[0] not in keys]
    if env:
        out["Env"] = env
    labels = {**(container.get("Labels") or {}), **(out.get("Labels") or {})}
    if labels:
        out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = container.get("Cmd")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = container.get("Entrypoint")
    for key in ("Healthcheck", "WorkingDir", "StopSignal", "Shell", "OnBuild"):
        if not out.get(key) and container.get(key):
            out[key] = container[key]
    vols = {**(container.get("Volumes") or {}), **(out.get("Volumes") or {})}
    if vols:
        out["Volumes"] = vols
    return out


def apply_dockerfile_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """docker commit -c: Dockerfile instructions applied to a config as the builder applies them
    (same parser, same word expansion against the config's Env).

    Raises:
        errdefs.InvalidArgument: a parse error, or ``<INSTR> is not a valid change command``.
    """
    from images_svc.build.dockerfile import parse_dockerfile
    from images_svc.build.executor import apply_config_instructions

    text = "\n".join(changes)
    if not text.strip():
        return config
    instructions = parse_dockerfile(text).instructions
    for ins in instructions:
        if ins.cmd not in VALID_CHANGE_COMMANDS:
            raise errdefs.InvalidArgument(f"{ins.cmd} is not a valid change command")
    return apply_config_instructions(copy.deepcopy(config), instructions)


def image_config(
    parent: dict[str, Any],
    config: dict[str, Any],
    diff_ids: list[str],
    history: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An image config over ``parent``'s: its rootfs plus ``diff_ids``, its history plus one entry."""
    rootfs = list((parent.get("rootfs") or {}).get("diff_ids") or [])
    img: dict[str, Any] = {
        "architecture": parent.get("architecture") or host_arch(),
        "os": parent.get("os") or "linux",
    }
    if parent.get("variant"):
        img["variant"] = parent["variant"]
    img.update(extra or {})
    img["config"] = config
    img["created"] = history["created"]
    img["history"] = [*(parent.get("history") or []), history]
    img["rootfs"] = {"type": "layers", "diff_ids": rootfs + diff_ids}
    return img


async def commit_snapshot(svc: ImagesService, key: str, opts: CommitOptions) -> str:
    """The images side of docker commit (see ImagesAPI.commit_image)."""
    from images_svc.service import _tag_target

    snap = await svc.get_snapshot(key)
    target = _tag_target(opts.repo, opts.tag) if opts.repo else None
    parent = await svc.get_image(snap.image_id)
    parent_cfg: dict[str, Any] = json.loads(parent.config_json)
    ctr_cfg = copy.deepcopy(opts.container_config or (parent_cfg.get("config") or {}))
    base = copy.deepcopy(opts.config) if opts.config is not None else ctr_cfg
    cfg = apply_dockerfile_changes(base, opts.changes) if opts.changes else base
    if opts.config is not None:
        cfg = merge_config(cfg, ctr_cfg)
    upper = Path(snap.upper_dir)
    parent_chain = parent.chain_ids[-1] if parent.chain_ids else ""
    layer = await add_layer(svc, parent_chain, lambda out: write_diff_tar(upper, out))
    created = now_rfc3339()
    hist: dict[str, Any] = {"created": created}
    if opts.author:
        hist["author"] = opts.author
    hist["created_by"] = " ".join(ctr_cfg.get("Cmd") or [])
    if opts.comment:
        hist["comment"] = opts.comment
    extra: dict[str, Any] = {"container": key, "container_config": ctr_cfg,
                             "docker_version": DOCKER_VERSION}
    if opts.author:
        extra["author"] = opts.author
    if opts.comment:
        extra["comment"] = opts.comment
    config = image_config(parent_cfg, cfg, [layer.diff_id], hist, extra)
    rec = await record_image(svc, parent, config, layer, [target.string()] if target else [])
    return rec.id


async def record_image(
    svc: ImagesService, parent: ImageRecord | None, config: dict[str, Any],
    layer: NewLayer | None, tags: list[str],
) -> ImageRecord:
    """Write the config and manifest blobs and record the image (and its new layer) at once."""
    layers = list(parent.layers) if parent else []
    sizes = [await svc._layer_size(c) for c in parent.chain_ids] if parent else []
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if layer is not None:
        layers.append((layer.media_type, layer.blob, layer.blob_size))
        sizes.append(layer.size)
    rec = await svc._commit_image(config, layers, diff_ids, sizes, parent=parent.id if parent else "")
    recs = [layer.record(rec.node_id)] if layer is not None else []
    await svc._store_image(rec, recs, tags)
    for t in tags:
        await svc._emit("tag", rec.id, svc_familiar(t))
    return rec


def svc_familiar(ref: str) -> str:
    from images_svc.service import familiar

    return familiar(ref)
