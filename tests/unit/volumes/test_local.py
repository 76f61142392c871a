"""Names, driver options and path safety of the local driver; no mounts, no root needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import errdefs
from volumes_svc import local
from volumes_svc.local import MS_BIND, MS_NOEXEC, MS_RDONLY, VolumeDirs


@pytest.mark.parametrize("name", ["ab", "data", "my-vol_1.x", "A1", "a" * 255, "0" * 64, "a.."])
def test_valid_names(name: str) -> None:
    assert local.validate_name(name) == name


@pytest.mark.parametrize("name", [
    "", "a", ".", "..", "../x", "a/b", "/abs", "-x", "_x", ".hidden", "a b", "a\n", "a\x00b",
    "é1", "a" * 256, "..\\x", "x/../..",
])
def test_invalid_names(name: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="includes invalid characters for a local"):
        local.validate_name(name)


def test_dirs_never_escape(tmp_path: Path) -> None:
    dirs = VolumeDirs(tmp_path / "volumes")
    for bad in ("..", "../etc", "a/../../b", "/etc"):
        with pytest.raises(errdefs.InvalidArgument):
            dirs.create(bad)
        with pytest.raises(errdefs.InvalidArgument):
            dirs.remove(bad)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["volumes"])
    assert [p.name for p in (tmp_path / "volumes").iterdir()] == []


def test_create_remove_and_trash(tmp_path: Path) -> None:
    dirs = VolumeDirs(tmp_path / "volumes")
    data = dirs.create("web")
    assert data == tmp_path / "volumes" / "web" / "_data" and data.is_dir()
    (data / "f").write_text("keep")
    assert dirs.create("web") == data and (data / "f").read_text() == "keep"  # never reset
    assert dirs.listdir() == ["web"]
    dirs.remove("web")
    assert not (tmp_path / "volumes" / "web").exists()
    assert os.listdir(tmp_path / "volumes") == []
    dirs.remove("web")  # missing is fine
    # A crash after the rename leaves a trash dir; the next start removes it.
    (tmp_path / "volumes" / ".rm-old-1234" / "_data").mkdir(parents=True)
    dirs.clear_trash()
    assert os.listdir(tmp_path / "volumes") == []


def test_symlinked_volume_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "evil").symlink_to(outside)
    with pytest.raises(errdefs.Internal):
        VolumeDirs(tmp_path / "volumes").create("evil")
    assert list(outside.iterdir()) == []


def test_no_options_is_a_plain_dir() -> None:
    assert local.parse_options({}) is None


def test_tmpfs_options() -> None:
    spec = local.parse_options({"type": "tmpfs", "device": "tmpfs",
                                "o": "size=100m,uid=1000,mode=1777,noexec,ro"})
    assert spec is not None
    assert (spec.fstype, spec.source, spec.data) == ("tmpfs", "tmpfs", "size=100m,uid=1000,mode=1777")
    assert spec.flags == MS_NOEXEC | MS_RDONLY


def test_bind_options(tmp_path: Path) -> None:
    spec = local.parse_options({"type": "none", "o": "bind,ro", "device": str(tmp_path)})
    assert spec is not None and (spec.fstype, spec.source, spec.flags) == ("bind", str(tmp_path), MS_RDONLY)
    assert not spec.flags & MS_BIND  # added when mounting
    local.check_device(spec)
    missing = local.parse_options({"type": "none", "o": "bind", "device": str(tmp_path / "nope")})
    assert missing is not None
    with pytest.raises(errdefs.InvalidArgument, match="no such directory"):
        local.check_device(missing)


@pytest.mark.parametrize(("opts", "message"), [
    ({"foo": "bar"}, 'invalid option: "foo"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"device": "tmpfs"}, 'missing required option: "type"'),
    ({"o": "size=1m"}, "missing required option"),
    ({"size": "10G"}, "no quota support"),
    ({"type": "nfs", "device": ":/export", "o": "addr=10.0.0.1"}, 'unsupported volume type "nfs"'),
    ({"type": "cifs", "device": "//h/s"}, "unsupported volume type"),
    ({"type": "ext4", "device": "/dev/sda1"}, "unsupported volume type"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,remount"}, "not an allowed mount option"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "size=1m;rm -rf"}, "bad value"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "uid=root"}, "bad value"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "mode=999"}, "bad value"),
    ({"type": "tmpfs", "device": "/etc", "o": "size=1m"}, "invalid device"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "x-systemd.automount"}, "not an allowed"),
    ({"type": "none", "device": "/tmp"}, "needs o=bind"),
    ({"type": "none", "device": "relative/dir", "o": "bind"}, "absolute"),
    ({"type": "none", "device": "/tmp/../etc", "o": "bind"}, "normalised"),
    ({"type": "none", "device": "//tmp", "o": "bind"}, "normalised"),
    ({"type": "none", "device": "/tmp", "o": "bind,size=1m"}, "not an allowed"),
    ({"type": "none", "device": "/tmp\x00/x", "o": "bind"}, "NUL"),
])
def test_bad_options(opts: dict[str, str], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message.replace("(", r"\(")):
        local.parse_options(opts)


def test_dir_size_counts_hardlinks_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 1000)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "c").write_bytes(b"y" * 24)
    (tmp_path / "l").symlink_to("/etc/passwd")
    assert local.dir_size(tmp_path) == 1024
    assert local.dir_size(tmp_path / "missing") == 0


def test_resolve_in_root_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "data").symlink_to("/etc")  # absolute: the rootfs's /etc, not the host's
    (root / "up").symlink_to("../../../../..")
    assert local.resolve_in_root(root, "/data") == root / "etc"
    assert local.resolve_in_root(root, "/up/etc") == root / "etc"
    assert local.resolve_in_root(root, "/../../etc") == root / "etc"
    assert local.resolve_in_root(root, "/missing/x") is None
    (root / "loop").symlink_to("loop")
    with pytest.raises(errdefs.InvalidArgument, match="symbolic links"):
        local.resolve_in_root(root, "/loop")


def test_copy_up_keeps_links_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    src = root / "srv"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("hello")
    os.chmod(src / "sub" / "f", 0o640)
    (src / "link").symlink_to("/etc/shadow")
    os.mkfifo(src / "fifo")
    dest = tmp_path / "_data"
    dest.mkdir()
    assert local.copy_up(root, "/srv", dest)
    assert (dest / "sub" / "f").read_text() == "hello"
    assert (dest / "sub" / "f").stat().st_mode & 0o777 == 0o640
    assert os.readlink(dest / "link") == "/etc/shadow"  # copied as a link, never followed
    assert (dest / "fifo").is_fifo()
    assert not local.copy_up(root, "/srv", dest)  # not empty any more: nothing copied
