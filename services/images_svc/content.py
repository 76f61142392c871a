"""Content-addressed blob store: blobs/sha256/<hex>, written through ingest/ and renamed."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread

import errdefs

__all__ = ["BlobWriter", "ContentStore", "DigestMismatch", "validate_digest"]

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


class DigestMismatch(errdefs.InvalidArgument):
    """Raised when content does not hash to the digest it was announced with."""

    def __init__(self, expected: str, actual: str, what: str = "") -> None:
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is ``sha256:<64 lowercase hex>``.

    Raises:
        errdefs.InvalidArgument: for any other form.
    """
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise errdefs.InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """Synchronous ingest of one blob; use from worker threads.

    Resource handling: the ingest file is removed by ``commit`` or ``abort``; used as a
    context manager, leaving the block without ``commit`` aborts.
    """

    def __init__(self, store: ContentStore, expected: str | None) -> None:
        if expected is not None:
            validate_digest(expected)
        self._store = store
        self._expected = expected
        self._hash = hashlib.sha256()
        self._size = 0
        self._path = store.ingest_dir / secrets.token_hex(16)
        self._file = open(self._path, "xb")
        self._done = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data`` to the blob and return its length."""
        self._hash.update(data)
        self._file.write(data)
        self._size += len(data)
        return len(data)

    def commit(self) -> tuple[str, int]:
        """Verify, make durable and move the blob into place; return ``(digest, size)``.

        Raises:
            DigestMismatch: when an expected digest was given and the content differs.
        """
        if self._done:
            raise errdefs.Internal("blob writer already closed")
        digest = "sha256:" + self._hash.hexdigest()
        if self._expected is not None and digest != self._expected:
            self.abort()
            raise DigestMismatch(self._expected, digest)
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            target = self._store.blobs_dir / digest[7:]
            if target.exists():
                self._path.unlink(missing_ok=True)
            else:
                os.rename(self._path, target)
                _fsync_dir(self._store.blobs_dir)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return digest, self._size

    def abort(self) -> None:
        """Drop the ingest file; safe to call more than once."""
        if self._done:
            return
        self._done = True
        self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class ContentStore:
    """Blobs by digest under ``root`` (``<data_root>/content``).

    Every write goes to ``ingest/``, is verified, fsynced and renamed into ``blobs/sha256``,
    so a blob that is visible is complete. ``reconcile`` clears what a crash left in ingest.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        """Return where the blob with ``digest`` lives (whether or not it exists).

        Raises:
            errdefs.InvalidArgument: if ``digest`` is not ``sha256:<64 hex>``.
        """
        return self.blobs_dir / validate_digest(digest)[7:]

    def _not_found(self, digest: str) -> errdefs.NotFound:
        return errdefs.NotFound(f"content digest {digest}: not found")

    async def has(self, digest: str) -> bool:
        """Return whether the blob is present."""
        path = self.blob_path(digest)
        return await anyio.to_thread.run_sync(path.is_file)

    async def size(self, digest: str) -> int:
        """Return the blob's size in bytes.

        Raises:
            errdefs.NotFound: if the blob is absent.
        """
        path = self.blob_path(digest)
        try:
            st = await anyio.to_thread.run_sync(os.stat, path)
        except FileNotFoundError:
            raise self._not_found(digest) from None
        return st.st_size

    async def read_bytes(self, digest: str, limit: int = 64 << 20) -> bytes:
        """Return the whole blob, refusing blobs larger than ``limit``.

        Raises:
            errdefs.NotFound: if the blob is absent.
            errdefs.InvalidArgument: if it is larger than ``limit``.
        """
        path = self.blob_path(digest)

        def read() -> bytes:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size > limit:
                    raise errdefs.InvalidArgument(
                        f"content {digest} is larger than the {limit} byte limit"
                    )
                return f.read()

        try:
            return await anyio.to_thread.run_sync(read)
        except FileNotFoundError:
            raise self._not_found(digest) from None

    async def iter_chunks(self, digest: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Yield the blob's bytes in chunks of at most ``chunk_size``.

        Raises:
            errdefs.NotFound: if the blob is absent (before the first chunk).
        """
        path = self.blob_path(digest)
        try:
            f = await anyio.open_file(path, "rb")
        except FileNotFoundError:
            raise self._not_found(digest) from None
        async with f:
            while chunk := await f.read(chunk_size):
                yield chunk

    async def delete(self, digest: str) -> None:
        """Remove the blob; removing an absent blob is not an error."""
        path = self.blob_path(digest)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def list_digests(self) -> list[str]:
        """Return the digests of every stored blob, sorted."""

        def scan() -> list[str]:
            return sorted(
                "sha256:" + e.name for e in os.scandir(self.blobs_dir) if _HEX_RE.match(e.name)
            )

        return await anyio.to_thread.run_sync(scan)

    async def reconcile(self) -> None:
        """Remove everything a crash left in ``ingest/`` (call before accepting writes)."""

        def clean() -> None:
            for entry in os.scandir(self.ingest_dir):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)

        await anyio.to_thread.run_sync(clean)

    def open_writer(self, expected: str | None = None) -> BlobWriter:
        """Start a synchronous blob write (for worker threads).

        Raises:
            errdefs.InvalidArgument: if ``expected`` is not a valid digest.
        """
        return BlobWriter(self, expected)

    async def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` and return its digest.

        Raises:
            DigestMismatch: if ``expected`` is given and differs from the content's digest.
        """

        def put() -> str:
            with self.open_writer(expected) as w:
                w.write(data)
                return w.commit()[0]

        return await anyio.to_thread.run_sync(put)
