"""unpack_layer: hostile tarballs are rejected without touching anything outside dest."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import errdefs
from images_svc.unpack import unpack_layer
from tests.unit.images.images_tarutil import E, make_tar, tree_hash

pytestmark = pytest.mark.needs_root

SYM, LNK, DIR, CHR, BLK, FIFO = (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE,
                                 tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """<tmp>/parent/{dest/, victim/hello, dest-evil/secret}; returns parent."""
    parent = tmp_path / "parent"
    (parent / "dest").mkdir(parents=True)
    (parent / "victim").mkdir()
    (parent / "victim" / "hello").write_bytes(b"hello")
    (parent / "victim" / "hello").chmod(0o644)
    (parent / "dest-evil").mkdir()
    (parent / "dest-evil" / "secret").write_bytes(b"secret")
    return parent


def _reject(site: Path, entries: list[E], match: str, fmt: int = tarfile.PAX_FORMAT) -> None:
    before = tree_hash(site, exclude={"dest"})
    with pytest.raises(errdefs.InvalidArgument, match=match) as ei:
        unpack_layer(io.BytesIO(make_tar(entries, fmt)), site / "dest")
    assert str(ei.value)  # a readable message
    assert tree_hash(site, exclude={"dest"}) == before
    assert (site / "victim" / "hello").read_bytes() == b"hello"
    assert stat.S_IMODE((site / "victim" / "hello").stat().st_mode) == 0o644


# --- names -------------------------------------------------------------------------------


def test_dotdot_entry(site: Path) -> None:
    _reject(site, [E("../victim/dotdot", data=b"x")], r'"\.\./victim/dotdot": path escapes')


def test_deep_dotdot_entry(site: Path) -> None:
    _reject(site, [E("../../../../../../victim/x", data=b"x")], "path escapes the layer root")


def test_bare_dotdot_dir(site: Path) -> None:
    _reject(site, [E("..", type=DIR, mode=0o777)], "path escapes the layer root")


def test_absolute_name(site: Path) -> None:
    _reject(site, [E(str(site / "victim" / "abs"), data=b"x")], "absolute path")


def test_absolute_dotdot_name(site: Path) -> None:
    _reject(site, [E("/../victim/x", data=b"x")], "invalid tar entry")


def test_dotdot_in_middle(site: Path) -> None:
    _reject(site, [E("a/../../victim/x", data=b"x")], "path escapes the layer root")


# --- symlinks ----------------------------------------------------------------------------


def test_symlink_then_write_through(site: Path) -> None:
    _reject(site, [E("x", type=SYM, link="../victim"), E("x/f", data=b"pwned")],
            r'"x/f": path escapes the layer root')
    assert not (site / "victim" / "f").exists()


def test_symlink_then_dir_through(site: Path) -> None:
    _reject(site, [E("x", type=SYM, link="../victim"), E("x/d", type=DIR)],
            "path escapes the layer root")


def test_two_hop_symlink_chain(site: Path) -> None:
    entries = [
        E("a", type=DIR, mode=0o755),
        E("a/up", type=SYM, link=".."),
        E("a/up/esc", type=SYM, link="../victim"),
        E("a/up/esc/f", data=b"pwned"),
    ]
    _reject(site, entries, "path escapes the layer root")
    assert not (site / "victim" / "f").exists()


def test_absolute_symlink_component(site: Path) -> None:
    _reject(site, [E("foo", type=SYM, link="/"),
                   E(f"foo/{site.relative_to('/')}/victim/x", data=b"pwned")],
            "path escapes the layer root")


def test_absolute_symlink_to_victim(site: Path) -> None:
    _reject(site, [E("foo", type=SYM, link=str(site / "victim")), E("foo/x", data=b"p")],
            "path escapes the layer root")


# --- hardlinks ---------------------------------------------------------------------------


def test_hardlink_dotdot(site: Path) -> None:
    _reject(site, [E("h", type=LNK, link="../victim/hello")], "escapes the layer root")


def test_hardlink_absolute_dotdot(site: Path) -> None:
    _reject(site, [E("h", type=LNK, link="/../victim/hello")], "escapes the layer root")


def test_hardlink_sibling_prefix(site: Path) -> None:
    _reject(site, [E("h", type=LNK, link="../dest-evil/secret")], "escapes the layer root")


def test_hardlink_through_symlinked_dir(site: Path) -> None:
    _reject(site, [E("v", type=SYM, link="../victim"), E("h", type=LNK, link="v/hello")],
            "path escapes the layer root")


def test_hardlink_to_escaping_symlink_then_chmod(site: Path) -> None:
    # CVE-2021-32760: a hardlink to a symlink, then an entry changing the link's mode.
    entries = [
        E("link", type=SYM, link="../victim/hello"),
        E("hl", type=LNK, link="link", mode=0o777),
        E("hl", data=b"", mode=0o777),
    ]
    _reject(site, entries, "escapes the layer root")


def test_file_replacing_escaping_symlink_never_writes_through(site: Path) -> None:
    before = tree_hash(site, exclude={"dest"})
    tar = make_tar([E("link", type=SYM, link="../victim/hello"),
                    E("link", data=b"mine", mode=0o777)])
    unpack_layer(io.BytesIO(tar), site / "dest")
    assert tree_hash(site, exclude={"dest"}) == before
    assert (site / "dest" / "link").read_bytes() == b"mine"
    assert not (site / "dest" / "link").is_symlink()


# --- whiteouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh...", "etc/.wh.."])
def test_invalid_whiteouts(site: Path, name: str) -> None:
    _reject(site, [E(name)], "invalid whiteout entry")


def test_whiteout_through_symlinked_parent(site: Path) -> None:
    _reject(site, [E("localetc", type=SYM, link="../victim"), E("localetc/.wh.hello")],
            "path escapes the layer root")
    assert (site / "victim" / "hello").exists()


# --- devices -----------------------------------------------------------------------------


def test_device_major_too_large(site: Path) -> None:
    _reject(site, [E("dev", type=CHR, major=2**33, minor=1)], "out of range",
            tarfile.GNU_FORMAT)


def test_device_minor_negative(site: Path) -> None:
    _reject(site, [E("dev", type=BLK, major=1, minor=-5)], "out of range",
            tarfile.GNU_FORMAT)


def test_device_rejected_before_creating_parents(site: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        unpack_layer(io.BytesIO(make_tar([E("a/b/dev", type=CHR, major=2**40, minor=0)],
                                         fmt=tarfile.GNU_FORMAT)), site / "dest")
    assert os.listdir(site / "dest") == []


# --- stream errors -----------------------------------------------------------------------


def test_not_a_tar(site: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="invalid tar header"):
        unpack_layer(io.BytesIO(b"this is not a tar archive" * 40), site / "dest")


def test_truncated_tar(site: Path) -> None:
    tar = make_tar([E("big", data=os.urandom(100_000))])
    with pytest.raises(errdefs.InvalidArgument, match="unexpected EOF"):
        unpack_layer(io.BytesIO(tar[:50_000]), site / "dest")


def test_max_size(site: Path) -> None:
    tar = make_tar([E("a", data=b"x" * 1000), E("b", data=b"y" * 1000)])
    with pytest.raises(errdefs.InvalidArgument, match="maximum unpacked size"):
        unpack_layer(io.BytesIO(tar), site / "dest", max_size=1500)


# --- normal layers -----------------------------------------------------------------------


def test_normal_layer(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    entries = [
        E("./", type=DIR, mode=0o751),
        E("./etc/", type=DIR, mode=0o700, uid=5, gid=6, mtime=1_600_000_000),
        E("./etc/passwd", data=b"root:x:0:0\n", mode=0o640, uid=7, gid=8,
          mtime=1_500_000_000),
        E("usr/bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),  # implicit parents
        E("usr/bin/sudo", type=LNK, link="usr/bin/su"),
        E("usr/bin/kaniko", type=LNK, link="/usr/bin/su"),  # absolute hardlink target
        E("rel", type=SYM, link="usr/bin/su", uid=3, gid=4),
        E("abs", type=SYM, link="/etc/shadow"),
        E("lib", type=SYM, link="usr/lib"),
        E("usr/lib", type=DIR, mode=0o755),
        E("lib/libc.so", data=b"elf"),  # through an in-layer relative symlink
        E("fifo", type=FIFO, mode=0o620),
        E("dev/null", type=CHR, major=1, minor=3, mode=0o666),
        E("dev/sda", type=BLK, major=8, minor=0, mode=0o660),
        E("x", data=b"xattr", pax={"SCHILY.xattr.user.test": "v1",
                                    "SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
        E("opq/.wh..wh..opq"),
        E("opq/keep", data=b"k"),
        E("gone/.wh.old"),
        E("swap", data=b"file"),
        E("swap", type=DIR, mode=0o755),
        E("swap/inner", data=b"i"),
        E("dir2file", type=DIR),
        E("dir2file/child", data=b"c"),
        E("dir2file", data=b"now a file"),
    ]
    stats = unpack_layer(io.BytesIO(make_tar(entries)), dest)
    assert stats.entries == len(entries)
    assert stats.size == sum(len(e.data) for e in entries if e.type == tarfile.REGTYPE)

    assert stat.S_IMODE(dest.stat().st_mode) == 0o751
    st = (dest / "etc").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o700, 5, 6)
    assert int(st.st_mtime) == 1_600_000_000
    st = (dest / "etc" / "passwd").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 7, 8)
    assert int(st.st_mtime) == 1_500_000_000
    assert (dest / "etc" / "passwd").read_bytes() == b"root:x:0:0\n"
    assert stat.S_IMODE((dest / "usr").stat().st_mode) == 0o755
    su = (dest / "usr" / "bin" / "su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755
    assert (dest / "usr" / "bin" / "sudo").stat().st_ino == su.st_ino
    assert (dest / "usr" / "bin" / "kaniko").stat().st_ino == su.st_ino
    assert os.readlink(dest / "rel") == "usr/bin/su"
    assert (os.lstat(dest / "rel").st_uid, os.lstat(dest / "rel").st_gid) == (3, 4)
    assert os.readlink(dest / "abs") == "/etc/shadow"
    assert (dest / "usr" / "lib" / "libc.so").read_bytes() == b"elf"
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dest / "fifo").st_mode) == 0o620
    null = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert os.minor(null.st_rdev) == 3 and stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(os.lstat(dest / "dev" / "sda").st_mode)
    assert os.getxattr(dest / "x", "user.test") == b"v1"
    with pytest.raises(OSError):
        os.getxattr(dest / "x", "trusted.overlay.redirect")
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert not (dest / "opq" / ".wh..wh..opq").exists()
    wh = os.lstat(dest / "gone" / "old")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert (dest / "swap" / "inner").read_bytes() == b"i"
    assert (dest / "dir2file").read_bytes() == b"now a file"


def test_hardlink_target_missing(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="not found"):
        unpack_layer(io.BytesIO(make_tar([E("h", type=LNK, link="nothere")])), tmp_path)


def test_binary_xattr_kept(tmp_path: Path) -> None:
    # security.capability values are binary; tar carries them in pax headers.
    raw = bytes([1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    pax = {"SCHILY.xattr.user.bin": raw.decode("utf-8", "surrogateescape")}
    tar = make_tar([E("cap", data=b"x", pax=pax)])
    unpack_layer(io.BytesIO(tar), tmp_path)
    assert os.getxattr(tmp_path / "cap", "user.bin") == raw
