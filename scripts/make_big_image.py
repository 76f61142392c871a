"""Write the big-3layer test image: a Docker 25+ `docker save` archive of three uncompressed layers.

Layer 1 is the busybox rootfs tarball as given; layers 2 and 3 hold ~150 MiB each of pseudo-random
files derived with SHAKE-256 from fixed seeds, so every run on every machine writes the same bytes
and the image has the same id. Standard library only: it runs before the venv exists.

Archive layout (what `docker save` writes since Docker 25)::

    blobs/sha256/<layer, config and manifest blobs>
    index.json       OCI image index naming the manifest, with the image name annotations
    manifest.json    the legacy docker-archive manifest (Config, RepoTags, Layers, LayerSources)
    oci-layout
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

REPO = "berth-test/big"
TAG = "latest"
# Fixed timestamps keep the config, and so the image id, stable.
MTIME = 1704067200
CREATED = "2024-01-01T00:00:00Z"
MIB = 1 << 20

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


class _HashingWriter(io.RawIOBase):
    """File wrapper that hashes and counts what is written through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._f.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)


def _stream(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def _file_sizes(layer: int, total: int) -> Iterator[tuple[str, int]]:
    """Yield (path, size) for one generated layer: many small files, then large ones to `total`."""
    sizes = _stream(f"berth-test/big sizes {layer}", 4096)
    used = 0
    for i in range(512):
        # 1..64 KiB small files exercise per-file costs in unpacking.
        size = 1024 * (1 + sizes[i] % 64)
        yield f"data/l{layer}/small/{i // 64:02d}/f{i:04d}.bin", size
        used += size
    i = 0
    while used < total:
        # 1..8 MiB large files carry most of the bytes.
        size = min(MIB * (1 + sizes[512 + i] % 8), total - used)
        yield f"data/l{layer}/large/f{i:04d}.bin", size
        used += size
        i += 1


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = MTIME
    return info


def _file_info(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    return info


def write_layer(layer: int, total: int, out: IO[bytes]) -> tuple[str, int]:
    """Write generated layer `layer` (~`total` bytes of file data) as a tar; return digest, size."""
    hw = _HashingWriter(out)
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        seen: set[str] = set()
        for path, size in _file_sizes(layer, total):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth])
                if d not in seen:
                    seen.add(d)
                    tar.addfile(_dir_info(d + "/"))
            data = _stream(f"berth-test/big {path}", size)
            tar.addfile(_file_info(path, size), io.BytesIO(data))
    return "sha256:" + hw.sha.hexdigest(), hw.size


def _digest_file(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest(), path.stat().st_size


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def build(base_layer: Path, out: Path, layer_bytes: int) -> str:
    """Write the archive to `out`; return the image id (the config digest)."""
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".big-layers-") as tmpdir:
        layers: list[tuple[Path, str, int]] = []
        layers.append((base_layer, *_digest_file(base_layer)))
        for n in (2, 3):
            p = Path(tmpdir) / f"layer{n}.tar"
            with p.open("wb") as f:
                digest, size = write_layer(n, layer_bytes, f)
            layers.append((p, digest, size))

        diff_ids = [d for _, d, _ in layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": CREATED,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
                "Labels": {"org.berth.test": "big-3layer"},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": CREATED, "created_by": "busybox rootfs (scripts/build-fixtures.sh)"},
                {"created": CREATED, "created_by": "make_big_image.py layer 2"},
                {"created": CREATED, "created_by": "make_big_image.py layer 3"},
            ],
        }
        config_bytes = _json_bytes(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        layer_descs = [{"mediaType": MT_LAYER, "digest": d, "size": s} for _, d, s in layers]
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layer_descs,
        }
        manifest_bytes = _json_bytes(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "annotations": {
                        "io.containerd.image.name": f"docker.io/{REPO}:{TAG}",
                        "org.opencontainers.image.ref.name": TAG,
                    },
                }
            ],
        }

        def blob(digest: str) -> str:
            return "blobs/sha256/" + digest.removeprefix("sha256:")

        docker_manifest = [
            {
                "Config": blob(config_digest),
                "RepoTags": [f"{REPO}:{TAG}"],
                "Layers": [blob(d) for d in diff_ids],
                "LayerSources": {desc["digest"]: desc for desc in layer_descs},
            }
        ]

        # Entries in name order, as `docker save` writes them.
        blobs: dict[str, Path | bytes] = {blob(d): p for p, d, _ in layers}
        blobs[blob(config_digest)] = config_bytes
        blobs[blob(manifest_digest)] = manifest_bytes
        with (
            out.open("wb") as f,
            tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            tar.addfile(_dir_info("blobs/"))
            tar.addfile(_dir_info("blobs/sha256/"))
            for name in sorted(blobs):
                content = blobs[name]
                if isinstance(content, bytes):
                    tar.addfile(_file_info(name, len(content)), io.BytesIO(content))
                else:
                    with content.open("rb") as src:
                        tar.addfile(_file_info(name, content.stat().st_size), src)
            for name, data in (
                ("index.json", _json_bytes(index)),
                ("manifest.json", _json_bytes(docker_manifest)),
                ("oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"})),
            ):
                tar.addfile(_file_info(name, len(data)), io.BytesIO(data))
            f.flush()
            os.fsync(f.fileno())
    return config_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-layer", type=Path, required=True, help="busybox rootfs tarball")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layer-mib", type=int, default=150, help="file data per generated layer")
    args = parser.parse_args()
    if shutil.disk_usage(args.out.parent).free < 3 * args.layer_mib * MIB:
        parser.error(f"not enough free space in {args.out.parent}")
    image_id = build(args.base_layer, args.out, args.layer_mib * MIB)
    print(f"{REPO}:{TAG} {image_id} -> {args.out}")


if __name__ == "__main__":
    main()
