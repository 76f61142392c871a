"""Image archives (docker save/load): docker-archive (legacy and 25+) and OCI layout tars.

Reading streams the tar once, in one worker thread, straight into the content store;
writing produces the Docker 25+ layout (OCI layout plus ``manifest.json``) as a stream.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import anyio
import anyio.from_thread
import anyio.to_thread

import errdefs
from dockerapi.platforms import host_arch
from dockerapi.reference import parse_reference
from images_svc.content import ContentStore, DigestMismatch
from images_svc.layers import DECOMPRESS_ERRORS, detect_compression, open_decompressed
from images_svc.unpack import tar_error
from streamio import ChunkReader

__all__ = [
    "MEDIA_DOCKER_MANIFEST",
    "MEDIA_OCI_CONFIG",
    "MEDIA_OCI_INDEX",
    "MEDIA_OCI_LAYER",
    "MEDIA_OCI_MANIFEST",
    "ArchiveImage",
    "Descriptor",
    "SaveImage",
    "read_archive",
    "write_archive",
]

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MANIFEST_TYPES = {MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST}
_INDEX_TYPES = {MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST}
_ANN_IMAGE_NAME = "io.containerd.image.name"
_ANN_REF_NAME = "org.opencontainers.image.ref.name"

_META_LIMIT = 20 << 20  # JSON metadata cap (containerd's import limit, CVE-2023-25153)
_BLOB_NAME_RE = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE


class Descriptor(NamedTuple):
    """A content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    size: int


@dataclass(slots=True)
class ArchiveImage:
    """One image found in a loaded archive; all its blobs are in the content store."""

    config_digest: str
    config: bytes
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    layers: list[Descriptor]
    diff_ids: list[str]
    repo_tags: list[str] = field(default_factory=list)  # as written in the archive


@dataclass(slots=True)
class SaveImage:
    """One image to write into an archive."""

    config_digest: str
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    layers: Sequence[tuple[str, str, int]]  # (media_type, digest, size), e.g. Descriptor
    repo_tags: list[str] = field(default_factory=list)  # familiar "name:tag"


_host_arch = host_arch


# --- reading -----------------------------------------------------------------------------


class _File(NamedTuple):
    digest: str
    size: int
    head: bytes  # first bytes, for compression sniffing


def _clean(name: str) -> str:
    if "\x00" in name or name.startswith("/"):
        raise errdefs.InvalidArgument(f"invalid archive entry {json.dumps(name)}: absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise errdefs.InvalidArgument(
            f"invalid archive entry {json.dumps(name)}: path escapes the archive root"
        )
    return "/".join(parts)


def _join_link(name: str, target: str) -> str:
    base = name.rsplit("/", 1)[0] if "/" in name else ""
    parts: list[str] = []
    for p in (target if target.startswith("/") else f"{base}/{target}").split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise errdefs.InvalidArgument(
                    f"invalid archive entry {json.dumps(name)}: link escapes the archive root"
                )
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def _is_meta(name: str) -> bool:
    # Archive bookkeeping that is kept in memory and never stored as a blob.
    return (
        name in ("manifest.json", "index.json", "oci-layout", "repositories")
        or name.endswith("/json")
        or name.endswith("/VERSION")
    )


class _Reader:
    """Everything the single pass over the tar collected, and the parsing after it."""

    def __init__(self, content: ContentStore, progress: Callable[[str], None] | None) -> None:
        self.content = content
        self.progress = progress
        self.files: dict[str, _File] = {}
        self.links: dict[str, str] = {}
        self.meta: dict[str, bytes] = {}

    # pass 1: stream every file -------------------------------------------------------

    def scan(self, stream: BinaryIO) -> None:
        with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8",
                          errors="surrogateescape") as tf:
            for m in tf:
                name = _clean(m.name)
                if not name or m.isdir():
                    continue
                if m.issym():
                    self.links[name] = _join_link(name, m.linkname)
                elif m.islnk():
                    self.links[name] = _clean(m.linkname)
                elif m.isreg():
                    self._file(tf, m, name)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> None:
        src = tf.extractfile(m)
        if src is None:  # pragma: no cover - regular members always have data
            return
        if _is_meta(name):
            if m.size > _META_LIMIT:
                raise errdefs.InvalidArgument(f"{name} in archive is too large")
            self.meta[name] = src.read()
            return
        bm = _BLOB_NAME_RE.match(name)
        expected = f"sha256:{bm.group(1)}" if bm else None
        head = b""
        with self.content.open_writer(expected) as w:
            while chunk := src.read(_CHUNK):
                if len(head) < 8:
                    head = (head + chunk)[:8]
                w.write(chunk)
            try:
                digest, size = w.commit()
            except DigestMismatch as e:
                raise DigestMismatch(e.expected, e.actual, f"file {name}") from None
        self.files[name] = _File(digest, size, head)
        if self.progress is not None and (size >= _CHUNK or name.endswith("layer.tar")):
            self.progress(f"Loading layer {digest[7:19]}")

    # pass 2: interpret ----------------------------------------------------------------

    def resolve(self, path: str, referrer: str) -> _File:
        name = path
        for _ in range(16):
            try:
                name = _clean(name)
            except errdefs.InvalidArgument:
                raise errdefs.InvalidArgument(
                    f"invalid path {json.dumps(path)} in {referrer}"
                ) from None
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise errdefs.InvalidArgument(
            f"file {path} referenced by {referrer} is missing from the archive"
        )

    def _json(self, data: bytes, what: str) -> Any:
        try:
            return json.loads(data)
        except ValueError as e:
            raise errdefs.InvalidArgument(f"invalid JSON in {what}: {e}") from None

    def blob(self, digest: str, referrer: str) -> bytes:
        f = self.resolve(f"blobs/sha256/{digest.removeprefix('sha256:')}", referrer)
        if f.digest != digest:  # pragma: no cover - names are verified while streaming
            raise DigestMismatch(digest, f.digest, referrer)
        return self.read_store(f, referrer)

    def read_store(self, f: _File, what: str) -> bytes:
        if f.size > _META_LIMIT:
            raise errdefs.InvalidArgument(f"{what}: JSON blob {f.digest} is too large")
        with open(self.content.blob_path(f.digest), "rb") as fh:
            return fh.read()

    def put(self, data: bytes) -> str:
        with self.content.open_writer() as w:
            w.write(data)
            return w.commit()[0]

    def _config(self, config: bytes, what: str, n_layers: int) -> list[str]:
        cfg = self._json(config, what)
        rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise errdefs.InvalidArgument(f"invalid image config {what}: no rootfs.diff_ids")
        if len(diff_ids) != n_layers:
            raise errdefs.InvalidArgument(
                f"invalid image config {what}: {len(diff_ids)} diff_ids for {n_layers} layers"
            )
        return list(diff_ids)

    def _pick_platform(self, index: dict[str, Any], what: str) -> dict[str, Any]:
        descs = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
        arch = _host_arch()
        present = [d for d in descs if self._has_blob(str(d.get("digest", "")))]
        for d in present:
            p = d.get("platform") or {}
            if p.get("os") == "linux" and p.get("architecture") == arch:
                return d
        plain = [d for d in present if not d.get("platform")
                 and (d.get("annotations") or {}).get("vnd.docker.reference.type") is None]
        if len(plain) == 1:
            return plain[0]
        raise errdefs.InvalidArgument(
            f"{what}: no manifest for platform linux/{arch} in the archive"
        )

    def _has_blob(self, digest: str) -> bool:
        name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
        return name in self.files or name in self.links

    def manifest_for(self, desc: dict[str, Any], what: str) -> tuple[Descriptor, dict[str, Any]]:
        """Follow ``desc`` through nested indexes to one image manifest."""
        for _ in range(8):
            digest = str(desc.get("digest", ""))
            if not _BLOB_NAME_RE.match(f"blobs/sha256/{digest.removeprefix('sha256:')}") or \
                    not digest.startswith("sha256:"):
                raise errdefs.InvalidArgument(f"{what}: invalid descriptor digest {digest!r}")
            raw = self.blob(digest, what)
            doc = self._json(raw, f"{what} ({digest})")
            mt = str(desc.get("mediaType") or doc.get("mediaType") or "")
            if mt in _INDEX_TYPES or (not mt and "manifests" in doc):
                desc = self._pick_platform(doc, what)
                continue
            if mt not in _MANIFEST_TYPES and "config" not in doc:
                raise errdefs.InvalidArgument(f"{what}: unsupported media type {mt!r}")
            return Descriptor(mt or MEDIA_OCI_MANIFEST, digest, len(raw)), doc
        raise errdefs.InvalidArgument(f"{what}: index nesting too deep")

    def _image_from_manifest(
        self, mdesc: Descriptor, doc: dict[str, Any], what: str, tags: list[str]
    ) -> ArchiveImage:
        cdesc = doc.get("config") or {}
        cdigest = str(cdesc.get("digest", ""))
        config = self.blob(cdigest, what)
        layers = []
        for ld in doc.get("layers") or []:
            d = str(ld.get("digest", ""))
            f = self.resolve(f"blobs/sha256/{d.removeprefix('sha256:')}", what)
            layers.append(Descriptor(str(ld.get("mediaType", MEDIA_OCI_LAYER)), d, f.size))
        diff_ids = self._config(config, cdigest, len(layers))
        return ArchiveImage(cdigest, config, mdesc.digest, mdesc.media_type, mdesc.size,
                            layers, diff_ids, tags)

    def parse(self) -> list[ArchiveImage]:
        if "manifest.json" in self.meta:
            return self._docker_archive()
        if "index.json" in self.meta:
            return self._oci_layout()
        raise errdefs.InvalidArgument(
            "invalid archive: neither manifest.json nor index.json found"
        )

    def _oci_index_by_config(self) -> dict[str, tuple[Descriptor, dict[str, Any]]]:
        out: dict[str, tuple[Descriptor, dict[str, Any]]] = {}
        if "index.json" not in self.meta:
            return out
        index = self._json(self.meta["index.json"], "index.json")
        for d in index.get("manifests") or []:
            try:
                mdesc, doc = self.manifest_for(d, "index.json")
            except errdefs.InvalidArgument:
                continue  # manifest.json is authoritative here; the index is a bonus
            cfg = str((doc.get("config") or {}).get("digest", ""))
            out.setdefault(cfg, (mdesc, doc))
        return out

    def _docker_archive(self) -> list[ArchiveImage]:
        entries = self._json(self.meta["manifest.json"], "manifest.json")
        if not isinstance(entries, list):
            raise errdefs.InvalidArgument("invalid manifest.json: not a list")
        by_config = self._oci_index_by_config()
        images: dict[str, ArchiveImage] = {}
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("Config"), str):
                raise errdefs.InvalidArgument("invalid manifest.json: entry without Config")
            cfile = self.resolve(e["Config"], "manifest.json")
            config = self.read_store(cfile, e["Config"])
            paths = e.get("Layers") or []
            files = [self.resolve(str(p), "manifest.json") for p in paths]
            diff_ids = self._config(config, e["Config"], len(files))
            tags = [str(t) for t in e.get("RepoTags") or []]
            layers = []
            for path, f, diff in zip(paths, files, diff_ids, strict=True):
                kind = detect_compression(f.head)
                if not kind and f.digest != diff:
                    raise DigestMismatch(diff, f.digest, f"layer {path}")
                layers.append(Descriptor(MEDIA_OCI_LAYER + (f"+{kind}" if kind else ""),
                                         f.digest, f.size))
            found = by_config.get(cfile.digest)
            if found is not None and [str(ld.get("digest")) for ld in
                                      found[1].get("layers") or []] == [d.digest for d in layers]:
                mdesc = found[0]
                layers = [Descriptor(str(ld.get("mediaType", MEDIA_OCI_LAYER)), d.digest, d.size)
                          for ld, d in zip(found[1]["layers"], layers, strict=True)]
            else:
                mdesc = self._build_manifest(cfile, layers)
            prev = images.get(cfile.digest)
            if prev is not None:
                prev.repo_tags.extend(t for t in tags if t not in prev.repo_tags)
                continue
            images[cfile.digest] = ArchiveImage(
                cfile.digest, config, mdesc.digest, mdesc.media_type, mdesc.size, layers,
                diff_ids, tags,
            )
        # "Loaded image" lines are the caller's: only it knows when an image is committed.
        return list(images.values())

    def _build_manifest(self, cfile: _File, layers: list[Descriptor]) -> Descriptor:
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": cfile.digest,
                       "size": cfile.size},
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size}
                       for d in layers],
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        return Descriptor(MEDIA_OCI_MANIFEST, self.put(raw), len(raw))

    def _oci_layout(self) -> list[ArchiveImage]:
        index = self._json(self.meta["index.json"], "index.json")
        if not isinstance(index, dict):
            raise errdefs.InvalidArgument("invalid index.json: not an object")
        images: dict[str, ArchiveImage] = {}
        for d in index.get("manifests") or []:
            if not isinstance(d, dict):
                raise errdefs.InvalidArgument("invalid index.json: bad descriptor")
            ann = d.get("annotations") or {}
            tag = ann.get(_ANN_IMAGE_NAME) or ""
            ref_name = ann.get(_ANN_REF_NAME) or ""
            if not tag and (":" in ref_name or "/" in ref_name):
                tag = ref_name  # a full reference; a bare tag names no repository
            mdesc, doc = self.manifest_for(d, "index.json")
            prev = images.get(mdesc.digest)
            if prev is not None:
                if tag and tag not in prev.repo_tags:
                    prev.repo_tags.append(tag)
                continue
            images[mdesc.digest] = self._image_from_manifest(
                mdesc, doc, "index.json", [tag] if tag else []
            )
        return list(images.values())


def _read_sync(
    reader: BinaryIO, content: ContentStore, progress: Callable[[str], None] | None
) -> list[ArchiveImage]:
    r = _Reader(content, progress)
    kind = ""
    try:
        stream, kind = open_decompressed(reader)
        r.scan(stream)
    except (tarfile.TarError, EOFError) as e:
        raise tar_error(e) from None
    except DECOMPRESS_ERRORS as e:
        raise errdefs.InvalidArgument(f"invalid {kind or 'compressed'} archive: {e}") from None
    return r.parse()


async def read_archive(
    chunks: AsyncIterator[bytes],
    content: ContentStore,
    on_progress: Callable[[str], Awaitable[None]] | None = None,
) -> list[ArchiveImage]:
    """Load an image archive (plain, gzip or zstd tar) into the content store.

    Accepts docker-archive (legacy ``<id>/layer.tar`` and Docker 25+ ``blobs/``) and OCI
    image layouts. The tar is read once, in one worker thread, pulling ``chunks`` as needed.

    Returns:
        The images found, with their config bytes and layer descriptors.

    Raises:
        errdefs.InvalidArgument: for non-tar or truncated input, missing files, bad JSON,
            or unsafe member names.
        DigestMismatch: if a ``blobs/sha256/<hex>`` file does not hash to its name.

    Resource handling: blobs already stored stay in the content store on failure (they
    are complete and verified); garbage collection owns them.
    """
    reader = ChunkReader(chunks)
    progress: Callable[[str], None] | None = None
    if on_progress is not None:
        cb = on_progress

        async def call(msg: str) -> None:
            await cb(msg)

        def progress(msg: str) -> None:
            anyio.from_thread.run(call, msg)

    return await anyio.to_thread.run_sync(
        _read_sync, io.BufferedReader(reader, _CHUNK), content, progress
    )


# --- writing -----------------------------------------------------------------------------


def _header(name: str, size: int, directory: bool = False) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = 0 if directory else size
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.mode = 0o755 if directory else 0o644
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _small_file(name: str, data: bytes) -> bytes:
    return _header(name, len(data)) + data + _pad(len(data))


def _full_name(tag: str) -> tuple[str, str]:
    ref = parse_reference(tag).with_default_tag()
    return ref.string(), ref.tag


async def write_archive(images: list[SaveImage], content: ContentStore) -> AsyncIterator[bytes]:
    """Stream a Docker 25+ archive (OCI layout + ``manifest.json``) of ``images``.

    Every blob is checked to exist before the first byte is produced.

    Raises:
        errdefs.NotFound: if a manifest, config or layer blob is missing.
        errdefs.InvalidArgument: if a repo tag is not a valid reference.
    """
    merged: dict[tuple[str, str], SaveImage] = {}
    for img in images:
        key = (img.config_digest, img.manifest_digest)
        if key in merged:
            tags = merged[key].repo_tags
            tags.extend(t for t in img.repo_tags if t not in tags)
        else:
            merged[key] = SaveImage(img.config_digest, img.manifest_digest,
                                    img.manifest_media_type, img.manifest_size,
                                    list(img.layers), list(img.repo_tags))
    images = list(merged.values())
    blobs: dict[str, int] = {}
    for img in images:
        for d in (img.manifest_digest, img.config_digest, *(x[1] for x in img.layers)):
            if d not in blobs:
                blobs[d] = await content.size(d)
    index_manifests: list[dict[str, Any]] = []
    manifest_json: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for img in images:
        desc = {"mediaType": img.manifest_media_type, "digest": img.manifest_digest,
                "size": blobs[img.manifest_digest]}
        if not img.repo_tags:
            index_manifests.append(desc)
        for tag in img.repo_tags:
            full, short = _full_name(tag)
            index_manifests.append(
                {**desc, "annotations": {_ANN_IMAGE_NAME: full, _ANN_REF_NAME: short}}
            )
            ref = parse_reference(tag)
            repositories.setdefault(ref.familiar_name(), {})[short] = img.config_digest[7:]
        manifest_json.append({
            "Config": f"blobs/sha256/{img.config_digest[7:]}",
            "RepoTags": list(img.repo_tags) or None,
            "Layers": [f"blobs/sha256/{x[1][7:]}" for x in img.layers],
        })

    def dump(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    yield _header("blobs/", 0, directory=True) + _header("blobs/sha256/", 0, directory=True)
    for digest, size in blobs.items():
        yield _header(f"blobs/sha256/{digest[7:]}", size)
        sent = 0
        async for chunk in content.iter_chunks(digest):
            if sent + len(chunk) > size:
                chunk = chunk[: size - sent]  # the blob grew: impossible for content-addressed
            sent += len(chunk)
            yield chunk
            if sent == size:
                break
        if sent != size:
            raise errdefs.Internal(f"content {digest} changed size while being saved")
        yield _pad(size)
    yield _small_file("index.json", dump({
        "schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_manifests,
    }))
    yield _small_file("manifest.json", dump(manifest_json))
    yield _small_file("oci-layout", dump({"imageLayoutVersion": "1.0.0"}))
    if repositories:
        yield _small_file("repositories", dump(repositories))
    yield b"\0" * (2 * _BLOCK)
