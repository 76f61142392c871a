"""Unpacked layers by chain id: ``<root>/<chain hex>/{diff/,meta.json}``, made atomically."""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import anyio.to_thread
import zstandard

import errdefs
from images_svc.content import DigestMismatch, validate_digest
from images_svc.unpack import unpack_layer
from streamio import PeekedReader

_GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile)
try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    def _gzip_open(f: BinaryIO) -> BinaryIO:
        return cast(BinaryIO, _igzip.IGzipFile(fileobj=f, mode="rb"))  # type: ignore[no-untyped-call]

    _GZIP_ERRORS = (*_GZIP_ERRORS, cast(type[BaseException], _isal_zlib.IsalError))
except ImportError:  # pragma: no cover - isal is a declared dependency

    def _gzip_open(f: BinaryIO) -> BinaryIO:
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]

__all__ = [
    "DECOMPRESS_ERRORS",
    "LayerInfo",
    "LayerStore",
    "chain_ids",
    "detect_compression",
    "open_decompressed",
]

DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (*_GZIP_ERRORS, zstandard.ZstdError)
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Return the OCI chain id of each layer stack (bottom first).

    chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)).
    """
    out: list[str] = []
    for diff in diff_ids:
        validate_digest(diff)
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


def detect_compression(head: bytes) -> str:
    """Return ``"gzip"``, ``"zstd"`` or ``""`` (uncompressed) from a stream's first bytes."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return ""


def open_decompressed(fileobj: BinaryIO) -> tuple[BinaryIO, str]:
    """Sniff gzip/zstd magic and return ``(uncompressed stream, compression)``."""
    head = fileobj.read(4)
    raw: BinaryIO = io.BufferedReader(PeekedReader(head, fileobj), 1 << 16)
    kind = detect_compression(head)
    if kind == "gzip":
        return _gzip_open(raw), kind
    if kind == "zstd":
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(raw, read_across_frames=True), kind
    return raw, kind


class _Hashing(io.RawIOBase):
    """Reads through, hashing and counting what passes."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._src.read(-1 if size is None else size)
        self.hash.update(data)
        self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """What ``meta.json`` records about one unpacked layer."""

    chain_id: str
    diff_id: str
    parent: str  # chain id of the layer below, "" for a base layer
    size: int  # sum of regular-file sizes


_libc = ctypes.CDLL(None, use_errno=True)


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    """Remove a tree that may hold read-only dirs; never follows symlinks."""

    def onerror(func: Callable[..., Any], p: str, exc: Any) -> None:
        # Make the parent writable and retry once (only matters without CAP_DAC_OVERRIDE).
        parent = os.path.dirname(p)
        try:
            st = os.lstat(parent)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(parent, st.st_mode | stat.S_IWUSR | stat.S_IXUSR)
            func(p)
        except FileNotFoundError:
            pass

    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=onerror)


class LayerStore:
    """Unpacked layers under ``root`` (``<data_root>/layers``), one dir per chain id.

    A layer dir exists only once complete: unpacking happens in ``tmp-<random>/`` and is
    renamed into place after the diff id is verified and the data is synced.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, chain_id: str) -> Path:
        return self.root / validate_digest(chain_id)[7:]

    def diff_dir(self, chain_id: str) -> Path:
        """Return the layer's unpacked tree (an overlay lower dir)."""
        return self._dir(chain_id) / "diff"

    def has(self, chain_id: str) -> bool:
        """Return whether the layer is complete on disk."""
        return (self._dir(chain_id) / "meta.json").is_file()

    def read_meta(self, chain_id: str) -> LayerInfo:
        """Return the layer's recorded metadata.

        Raises:
            errdefs.NotFound: if the layer is not present.
        """
        try:
            raw = (self._dir(chain_id) / "meta.json").read_bytes()
        except FileNotFoundError:
            raise errdefs.NotFound(f"layer {chain_id} not found") from None
        d = json.loads(raw)
        return LayerInfo(d["chain_id"], d["diff_id"], d["parent"], int(d["size"]))

    async def unpack(
        self,
        chain_id: str,
        parent: str,
        blob_path: Path,
        expected_diff_id: str | None,
        *,
        max_size: int | None = None,
    ) -> LayerInfo:
        """Unpack a (gzip/zstd/plain) layer blob as ``chain_id`` on top of ``parent``.

        Returns at once if the layer already exists.

        Raises:
            DigestMismatch: if the uncompressed stream's digest differs from
                ``expected_diff_id``, or (without one) does not yield ``chain_id``.
            errdefs.InvalidArgument: for a corrupt or hostile layer.
            errdefs.NotFound: if ``parent`` is given but not unpacked.
        """
        validate_digest(chain_id)
        if expected_diff_id is not None:
            validate_digest(expected_diff_id)
        if parent and not self.has(parent):
            raise errdefs.NotFound(f"parent layer {parent} not found")
        return await anyio.to_thread.run_sync(
            self._unpack_sync, chain_id, parent, Path(blob_path), expected_diff_id, max_size
        )

    def _unpack_sync(
        self,
        chain_id: str,
        parent: str,
        blob_path: Path,
        expected: str | None,
        max_size: int | None,
    ) -> LayerInfo:
        if self.has(chain_id):
            return self.read_meta(chain_id)
        tmp = self.root / f"tmp-{secrets.token_hex(8)}"
        diff = tmp / "diff"
        tmp.mkdir(mode=0o700)
        try:
            diff.mkdir(mode=0o755)
            with open(blob_path, "rb") as f:
                stream, kind = open_decompressed(f)
                hasher = _Hashing(stream)
                try:
                    stats = unpack_layer(hasher, diff, max_size=max_size)  # type: ignore[arg-type]
                    hasher.drain()  # trailing padding is part of the diff id
                except _decompress_errors(kind) as e:
                    raise errdefs.InvalidArgument(f"invalid {kind} layer stream: {e}") from None
            diff_id = "sha256:" + hasher.hash.hexdigest()
            if expected is not None and diff_id != expected:
                raise DigestMismatch(expected, diff_id, f"layer {chain_id}")
            computed = diff_id if not parent else chain_ids_from(parent, diff_id)
            if computed != chain_id:
                raise DigestMismatch(chain_id, computed, "chain id")
            _syncfs(tmp)
            info = LayerInfo(chain_id, diff_id, parent, stats.size)
            with open(tmp / "meta.json", "w") as mf:
                json.dump(asdict(info), mf)
                mf.flush()
                os.fsync(mf.fileno())
            final = self._dir(chain_id)
            try:
                os.rename(tmp, final)
            except OSError:
                if self.has(chain_id):  # another unpack won the race
                    _rmtree(tmp)
                    return self.read_meta(chain_id)
                if final.exists():  # leftover without meta.json
                    _rmtree(final)
                    os.rename(tmp, final)
                else:
                    raise
            _fsync_dir(self.root)
            return info
        except BaseException:
            _rmtree(tmp)
            raise

    def diff_id_of(self, blob_path: Path) -> str:
        """Return the diff id (sha256 of the uncompressed stream) of a layer blob.

        Blocking: run it in a worker thread.

        Raises:
            errdefs.InvalidArgument: if the compressed stream is corrupt.
        """
        with open(blob_path, "rb") as f:
            stream, kind = open_decompressed(f)
            hasher = _Hashing(stream)
            try:
                hasher.drain()
            except _decompress_errors(kind) as e:
                raise errdefs.InvalidArgument(f"invalid {kind} layer stream: {e}") from None
        return "sha256:" + hasher.hash.hexdigest()

    async def remove(self, chain_id: str) -> None:
        """Delete the layer's directory; removing an absent layer is not an error."""
        target = self._dir(chain_id)

        def rm() -> None:
            if not target.exists():
                return
            # Rename first so a crash never leaves a half-deleted layer that looks complete.
            doomed = self.root / f"tmp-del-{secrets.token_hex(8)}"
            os.rename(target, doomed)
            _rmtree(doomed)

        await anyio.to_thread.run_sync(rm)

    async def reconcile(self) -> list[str]:
        """Remove crash leftovers (tmp-* dirs, layers without meta.json).

        Returns:
            The chain ids of the complete layers present.
        """

        def scan() -> list[str]:
            present: list[str] = []
            for entry in os.scandir(self.root):
                path = Path(entry.path)
                if _HEX_RE.match(entry.name) and entry.is_dir(follow_symlinks=False):
                    if (path / "meta.json").is_file():
                        present.append("sha256:" + entry.name)
                        continue
                if entry.name.startswith("tmp-") or _HEX_RE.match(entry.name):
                    _rmtree(path)
            return sorted(present)

        return await anyio.to_thread.run_sync(scan)


def chain_ids_from(parent: str, diff_id: str) -> str:
    """Return the chain id of ``diff_id`` on top of the chain ``parent``."""
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def _decompress_errors(kind: str) -> tuple[type[BaseException], ...]:
    if kind == "gzip":
        return _GZIP_ERRORS
    if kind == "zstd":
        return (zstandard.ZstdError, EOFError)
    return (EOFError,)
