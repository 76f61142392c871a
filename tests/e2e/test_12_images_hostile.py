"""Hostile archives through the real CLI: rejected with a clear error, nothing written outside."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess, DockerCLI


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(root)} {st.st_mode} {st.st_size}\n".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def _tar(build: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    return buf.getvalue()


def _file(tf: tarfile.TarFile, name: str, data: bytes = b"pwned") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _link(tf: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tf.addfile(info)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = Path("/tmp") / f"berth-victim-{uuid.uuid4().hex[:8]}"
    v.mkdir()
    (v / "hello").write_text("do not touch")
    yield v
    for p in sorted(v.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    v.rmdir()


def _cases(victim: Path) -> dict[str, bytes]:
    up = "../" * 12 + str(victim).lstrip("/")

    def dotdot(tf: tarfile.TarFile) -> None:
        _file(tf, f"{up}/pwned")

    def absolute(tf: tarfile.TarFile) -> None:
        _file(tf, f"{victim}/pwned")

    def symlink_then_write(tf: tarfile.TarFile) -> None:
        _link(tf, "x", up)
        _file(tf, "x/pwned")

    def two_hop(tf: tarfile.TarFile) -> None:
        _link(tf, "a/up", "..")
        _link(tf, "a/up/esc", up)
        _file(tf, "a/up/esc/pwned")

    def abs_symlink_dir(tf: tarfile.TarFile) -> None:
        _link(tf, "foo", "/")
        _file(tf, f"foo/{str(victim).lstrip('/')}/pwned")

    def hardlink_out(tf: tarfile.TarFile) -> None:
        _link(tf, "h", f"{up}/hello", tarfile.LNKTYPE)

    def bad_whiteout(tf: tarfile.TarFile) -> None:
        _file(tf, "etc/.wh..", b"")

    def device_range(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("dev/evil")
        info.type = tarfile.CHRTYPE
        info.devmajor = 2**40
        info.devminor = 1
        tf.addfile(info)

    builders = {"dotdot": dotdot, "absolute": absolute, "symlink_then_write": symlink_then_write,
                "two_hop": two_hop, "abs_symlink_dir": abs_symlink_dir, "hardlink_out": hardlink_out,
                "bad_whiteout": bad_whiteout, "device_range": device_range}
    out = {}
    for name, fn in builders.items():
        try:
            out[name] = _tar(fn)
        except (ValueError, OverflowError):
            # Python's tarfile refuses the huge device number: write the header by hand.
            out[name] = _raw_device_tar()
    return out


def _raw_device_tar() -> bytes:
    info = tarfile.TarInfo("dev/evil")
    info.type = tarfile.CHRTYPE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[329:337] = b"\x80" + (2**40).to_bytes(7, "big")  # base-256 devmajor: 2^40
    header[337:345] = b"0000001\0"
    header[148:156] = b"        "
    header[148:156] = f"{sum(header) & 0o777777:06o}\0 ".encode()
    return bytes(header) + b"\0" * 1024


CASES = ["dotdot", "absolute", "symlink_then_write", "two_hop", "abs_symlink_dir", "hardlink_out",
         "bad_whiteout", "device_range"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_import_rejected(
    berthd: BerthdProcess, docker: DockerCLI, victim: Path, case: str
) -> None:
    data = _cases(victim)[case]
    outside = _tree_hash(victim)
    images_before = docker("images", "-aq", "--no-trunc").stdout.split()
    layers = berthd.data_root / "layers"
    layers_before = sorted(p.name for p in layers.iterdir()) if layers.exists() else []
    res = docker("import", "-", f"hostile-{case}", input=data, text=False, check=False)
    assert res.returncode != 0, res.stdout
    err = res.stderr.decode()
    assert "invalid" in err.lower(), err
    assert "internal error" not in err, err
    assert _tree_hash(victim) == outside
    assert not (victim / "pwned").exists()
    assert docker("images", "-aq", "--no-trunc").stdout.split() == images_before
    layers_after = sorted(p.name for p in layers.iterdir()) if layers.exists() else []
    assert layers_after == layers_before  # no temp or half layer left behind


@pytest.mark.parametrize("case", ["dotdot", "symlink_then_write", "hardlink_out"])
def test_hostile_layer_in_load_rejected(
    docker: DockerCLI, victim: Path, tmp_path: Path, case: str
) -> None:
    layer = _cases(victim)[case]
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [f"hostile-load-{case}:x"],
                            "Layers": ["l/layer.tar"]}]).encode()

    def build(tf: tarfile.TarFile) -> None:
        _file(tf, f"{config_hex}.json", config)
        _file(tf, "l/layer.tar", layer)
        _file(tf, "manifest.json", manifest)

    archive = tmp_path / "hostile.tar"
    archive.write_bytes(_tar(build))
    outside = _tree_hash(victim)
    res = docker("load", "-i", str(archive), check=False)
    assert res.returncode != 0
    assert _tree_hash(victim) == outside
    assert docker("image", "inspect", f"hostile-load-{case}:x", check=False).returncode != 0
