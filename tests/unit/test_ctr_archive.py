"""docker cp/diff/export building blocks: in-container path resolver, stat header, tar rules, hostile tars."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import errdefs
from containers_svc.api import PathStat
from containers_svc.archive import abs_archive_path, filter_changes
from containers_svc.fsview import (
    ContainerFS,
    ExtractOptions,
    FSMount,
    GoMode,
    go_base,
    go_file_mode,
    rfc3339_nano,
)
from gateway_svc.routes.containers_fs import path_stat_header
from images_svc.model import Change, ChangeKind

UID, GID = os.getuid(), os.getgid()


def _tree_hash(root: Path) -> str:
    """Hash of every name, type, mode, owner, link target and content below root."""
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{p}\0{st.st_mode}\0{st.st_uid}\0{st.st_gid}\0".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                h.update(Path(p).read_bytes())
    return h.hexdigest()


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A host dir with a secret, a container rootfs full of escaping links, and a volume."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    (host / "passwd").write_text("host passwd\n")
    root = tmp_path / "root"
    for d in ("etc", "a/b", "tmp", "data", "run"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0\n")
    (root / "a/b/file").write_text("in container\n")
    os.symlink("/", root / "a/up")  # absolute: the container root
    os.symlink("../../../../../../../../etc", root / "a/etc2")  # climbs: clamps at the root
    os.symlink(str(host), root / "hostlink")  # absolute host path: resolved in the container
    os.symlink("../" * 12 + str(host).lstrip("/"), root / "hostlink2")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    os.symlink("/run", root / "varrun")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v").write_text("volume\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    return {"host": host, "root": root, "vol": vol, "hosts": hosts}


def _fs(w: dict[str, Path], ro: bool = False) -> ContainerFS:
    return ContainerFS(str(w["root"]), [FSMount("/data", str(w["vol"]), not ro),
                                        FSMount("/etc/hosts", str(w["hosts"]))])  # fmt: skip


# --- resolver ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/etc/passwd", "/etc/passwd"),
        ("etc/passwd", "/etc/passwd"),
        ("/../../../../etc/passwd", "/etc/passwd"),  # TestCpGarbagePath
        ("/a/up/etc/passwd", "/etc/passwd"),
        ("/a/etc2/passwd", "/etc/passwd"),
        ("/a/b/../up/a/b/file", "/a/b/file"),
        ("/varrun", "/run"),
        ("/data/v", "/data/v"),
        ("/a/up/data/v", "/data/v"),
    ],
)
def test_resolve_stays_inside(world: dict[str, Path], path: str, canonical: str) -> None:
    with _fs(world) as fs:
        r = fs.resolve(path, follow_last=True)
        try:
            assert r.path == canonical
            assert r.fd >= 0
        finally:
            r.close()


def test_links_to_host_paths_resolve_in_the_container(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        for link in ("/hostlink/secret", "/hostlink2/secret"):
            with pytest.raises(FileNotFoundError):
                fs.stat(link)
            r = fs.resolve(link, follow_last=True)
            assert r.fd == -1 and r.path == str(world["host"]) + "/secret"
            r.close()


def test_resolve_errors(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        with pytest.raises(OSError) as e:
            fs.resolve("/loop1/x", follow_last=True)
        assert e.value.errno == 40  # ELOOP
        with pytest.raises(NotADirectoryError):
            fs.resolve("/etc/passwd/x", follow_last=False)
        r = fs.resolve("/etc/passwd/x", follow_last=False, strict=False)
        assert r.path == "/etc/passwd/x" and r.fd == -1 and r.parent == -1
        r.close()
        r = fs.resolve("/nope/deeper", follow_last=False)
        assert (r.fd, r.parent, r.path) == (-1, -1, "/nope/deeper")
        r.close()


def test_mount_destination_behind_a_symlink(world: dict[str, Path]) -> None:
    # The runtime mounts /varrun/x at /run/x; the view must put it there too.
    (world["root"] / "run/x").mkdir()
    with ContainerFS(str(world["root"]), [FSMount("/varrun/x", str(world["vol"]))]) as fs:
        assert fs.stat("/run/x/v").size == len("volume\n")
        assert fs.stat("/varrun/x/v").name == "v"


# --- stat and its header ----------------------------------------------------------------------


def test_stat_follows_docker_rules(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        st = fs.stat("/a/up")
        assert st.name == "up" and st.mode & GoMode.SYMLINK and st.link_target == "/"
        assert fs.stat("/a/up/").mode & GoMode.DIR  # trailing slash follows
        dot = fs.stat("/a/b/.")
        assert dot.name == "." and dot.mode & GoMode.DIR
        assert fs.stat("/a/etc2").link_target == "/etc"
        assert fs.stat("/").name == "/"
        assert fs.stat("/etc/hosts").size == len("127.0.0.1 localhost\n")  # the bind mount
        with pytest.raises(FileNotFoundError):
            fs.stat("/missing")


def test_go_modes_and_times() -> None:
    assert go_file_mode(0o040755) == GoMode.DIR | 0o755
    assert go_file_mode(0o120777) == GoMode.SYMLINK | 0o777
    assert go_file_mode(0o104755) == GoMode.SETUID | 0o755
    assert go_file_mode(0o020666) == GoMode.DEVICE | GoMode.CHAR_DEVICE | 0o666
    assert go_file_mode(0o010644) == GoMode.NAMED_PIPE | 0o644
    assert go_file_mode(0o041777) == GoMode.DIR | GoMode.STICKY | 0o777
    assert rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert go_base("/") == "/" and go_base("/a/b/") == "b" and go_base("/a/.") == "." and go_base("") == "."


def test_stat_header_is_base64_json() -> None:
    hdr = path_stat_header(PathStat("passwd", 12, 0o644, "2023-11-14T22:13:20Z", ""))
    assert json.loads(base64.b64decode(hdr)) == {
        "name": "passwd", "size": 12, "mode": 420, "mtime": "2023-11-14T22:13:20Z", "linkTarget": ""}


def test_abs_archive_path() -> None:
    assert abs_archive_path("etc/passwd") == "/etc/passwd"
    assert abs_archive_path("/a/../b/") == "/b/"
    assert abs_archive_path("/a/.") == "/a/."
    assert abs_archive_path("/") == "/"
    assert abs_archive_path("../../x") == "/x"


# --- archives out -------------------------------------------------------------------------------


def _names(fs: ContainerFS, path: str) -> list[str]:
    st = fs.stat(path)
    data = b"".join(fs.iter_archive(path, st))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.name + ("/" if m.isdir() else "") for m in tf]


def test_archive_names(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        assert _names(fs, "/a/b") == ["b/", "b/file"]
        assert _names(fs, "/a/b/") == ["b/", "b/file"]
        assert _names(fs, "/a/b/.") == ["./", "./file"]
        assert _names(fs, "/etc/passwd") == ["passwd"]
        assert _names(fs, "/a/up") == ["up"]  # the link itself
        st = fs.stat("/a/up")
        with tarfile.open(fileobj=io.BytesIO(b"".join(fs.iter_archive("/a/up", st)))) as tf:
            (m,) = tf.getmembers()
            assert m.issym() and m.linkname == "/"
        # The mount is walked into, as in Docker's view; the host dir behind /hostlink is not.
        root = _names(fs, "/")
        assert "/data/v" in root and "/etc/hosts" in root
        assert not any("secret" in n for n in root)


def test_archive_content_and_hardlinks(world: dict[str, Path]) -> None:
    os.link(world["root"] / "a/b/file", world["root"] / "a/b/link")
    with _fs(world) as fs:
        st = fs.stat("/a")
        with tarfile.open(fileobj=io.BytesIO(b"".join(fs.iter_archive("/a", st)))) as tf:
            members = {m.name: m for m in tf}
            assert members["a/b/link"].islnk() and members["a/b/link"].linkname == "a/b/file"
            f = tf.extractfile(members["a/b/file"])
            assert f is not None and f.read() == b"in container\n"


def test_export_leaves_mounts_out(world: dict[str, Path]) -> None:
    (world["root"] / "a/b/fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(world["root"] / "a/b/fifo")
    with _fs(world) as fs:
        data = b"".join(fs.iter_export())
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
        assert "etc/passwd" in names and "a/b/file" in names and "data" in names
        assert "data/v" not in names and "." not in names and "" not in names
        assert tf.getmember("a/b/fifo").isfifo()


# --- archives in --------------------------------------------------------------------------------


def _tar(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            info, data = e if isinstance(e, tuple) else (e, b"")
            info.uid, info.gid = UID, GID
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    i = tarfile.TarInfo(name)
    i.type, i.linkname, i.mode, i.mtime = kind, link, mode, 1_600_000_000
    return i


def test_extract_regular_tree(world: dict[str, Path]) -> None:
    root = world["root"]
    with _fs(world) as fs:
        fs.extract(_tar(_info("d", tarfile.DIRTYPE, mode=0o750), (_info("d/f"), b"hello"),
                        _info("d/l", tarfile.SYMTYPE, "f"), _info("d/h", tarfile.LNKTYPE, "d/f"),
                        (_info("/abs"), b"x"), (_info("implied/dir/f"), b"y")),
                   "/tmp", ExtractOptions())  # fmt: skip
    assert (root / "tmp/d/f").read_bytes() == b"hello"
    assert (root / "tmp/d").stat().st_mode & 0o777 == 0o750
    assert int((root / "tmp/d").stat().st_mtime) == 1_600_000_000
    assert os.readlink(root / "tmp/d/l") == "f"
    assert (root / "tmp/d/h").stat().st_ino == (root / "tmp/d/f").stat().st_ino
    assert (root / "tmp/abs").read_bytes() == b"x"  # a leading "/" is relative to the destination
    assert (root / "tmp/implied/dir/f").read_bytes() == b"y"


def test_extract_into_mounts_and_through_links(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        fs.extract(_tar((_info("data/new"), b"v2"), _info("s", tarfile.SYMTYPE, "/"),
                        (_info("s/etc/pwned"), b"p")), "/", ExtractOptions())  # fmt: skip
        # A symlink to "/" written by the tar itself leads to the container root, never the host's.
        fs.extract(_tar(_info("up2", tarfile.SYMTYPE, "/"), (_info("up2/tmp/x"), b"z")), "/a",
                   ExtractOptions())  # fmt: skip
    assert (world["vol"] / "new").read_bytes() == b"v2"
    assert (world["root"] / "etc/pwned").read_bytes() == b"p"
    assert (world["root"] / "tmp/x").read_bytes() == b"z"
    assert not Path("/etc/pwned").exists()


def test_extract_into_read_only_mount(world: dict[str, Path]) -> None:
    with _fs(world, ro=True) as fs, pytest.raises(OSError) as e:
        fs.extract(_tar((_info("data/new"), b"v2")), "/", ExtractOptions())
    assert e.value.errno == 30  # EROFS
    assert not (world["vol"] / "new").exists()


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([(_info("../escape"), b"x")], errdefs.InvalidArgument),
        ([(_info("a/../../escape"), b"x")], errdefs.InvalidArgument),
        ([_info("r", tarfile.SYMTYPE, "../../../../../../../etc")], errdefs.Internal),
        ([_info("h", tarfile.LNKTYPE, "../../../etc/passwd")], errdefs.Internal),
        ([_info("dev", tarfile.CHRTYPE)], errdefs.InvalidArgument),
        ([_info("blk", tarfile.BLKTYPE)], errdefs.InvalidArgument),
    ],
)
def test_hostile_tars_are_refused(
    world: dict[str, Path], entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]],
    error: type[Exception],
) -> None:
    before = _tree_hash(world["host"])
    parent_before = sorted(os.listdir(world["root"].parent))
    with _fs(world) as fs, pytest.raises(error):
        fs.extract(_tar(*entries), "/a/b", ExtractOptions())
    assert _tree_hash(world["host"]) == before
    assert sorted(os.listdir(world["root"].parent)) == parent_before
    assert not (world["root"] / "escape").exists()


def test_links_in_the_container_never_reach_the_host(world: dict[str, Path]) -> None:
    before = _tree_hash(world["host"])
    with _fs(world) as fs:
        for dest in ("/hostlink", "/hostlink2"):
            r = fs.resolve(dest, follow_last=True)
            assert r.fd == -1  # Docker: EvalSymlinks fails -> 404, nothing written
            r.close()
        # Through the dangling link: Docker's open fails with ENOENT (a 404), nothing is written.
        with pytest.raises(FileNotFoundError):
            fs.extract(_tar((_info("hostlink/secret"), b"owned")), "/", ExtractOptions())
        (world["root"] / str(world["host"]).lstrip("/")).mkdir(parents=True)
        fs.extract(_tar((_info("hostlink/secret"), b"owned")), "/", ExtractOptions())
        fs.extract(_tar((_info("hostlink2/secret2"), b"owned")), "/", ExtractOptions())
    assert _tree_hash(world["host"]) == before
    inside = world["root"] / str(world["host"]).lstrip("/")
    assert (inside / "secret").read_bytes() == b"owned" and (inside / "secret2").exists()


def test_no_overwrite_dir_non_dir(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        with pytest.raises(errdefs.Internal, match="cannot overwrite directory"):
            fs.extract(_tar((_info("b"), b"x")), "/a", ExtractOptions(no_overwrite_dir_non_dir=True))
        with pytest.raises(errdefs.Internal, match="cannot overwrite non-directory"):
            fs.extract(_tar(_info("passwd", tarfile.DIRTYPE)), "/etc",
                       ExtractOptions(no_overwrite_dir_non_dir=True))  # fmt: skip
        with pytest.raises(OSError) as e:  # a bind-mounted file cannot be replaced (EBUSY)
            fs.extract(_tar((_info("hosts"), b"x")), "/etc", ExtractOptions())
        assert e.value.errno == 16
        fs.extract(_tar((_info("b"), b"x")), "/a", ExtractOptions())  # allowed without the flag
    assert (world["root"] / "a/b").read_bytes() == b"x"
    assert (world["hosts"]).read_text() == "127.0.0.1 localhost\n"


def test_overlay_xattrs_are_dropped(world: dict[str, Path]) -> None:
    info = _info("f")
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "1"}
    with _fs(world) as fs:
        fs.extract(_tar((info, b"x")), "/tmp", ExtractOptions())
    assert "trusted.overlay.redirect" not in os.listxattr(world["root"] / "tmp/f")


# --- diff ---------------------------------------------------------------------------------------


def test_filter_changes_hides_init_layer_paths() -> None:
    C = ChangeKind
    raw = [Change("/dev", C.ADDED), Change("/etc", C.MODIFIED), Change("/etc/hostname", C.ADDED),
           Change("/etc/hosts", C.ADDED), Change("/proc", C.ADDED), Change("/tmp", C.MODIFIED),
           Change("/tmp/x", C.ADDED)]  # fmt: skip
    assert filter_changes(raw) == [Change("/tmp", C.MODIFIED), Change("/tmp/x", C.ADDED)]
    raw2 = [Change("/etc", C.MODIFIED), Change("/etc/hostname", C.ADDED), Change("/etc/motd", C.ADDED)]
    assert filter_changes(raw2) == [Change("/etc", C.MODIFIED), Change("/etc/motd", C.ADDED)]


def test_proto_round_trips() -> None:
    from containers_svc import fsconvert

    st = PathStat("x", 3, GoMode.SYMLINK | 0o777, "2023-11-14T22:13:20Z", "/etc")
    assert fsconvert.stat_from_proto(fsconvert.stat_to_proto(st)) == st
    changes = [Change("/a", ChangeKind.ADDED), Change("/b", ChangeKind.DELETED),
               Change("/", ChangeKind.MODIFIED)]  # fmt: skip
    assert fsconvert.changes_from_proto(fsconvert.changes_to_proto(changes)) == changes


def test_copy_uid_gid_reads_the_containers_passwd(world: dict[str, Path]) -> None:
    from containers_svc.archive import _container_ids

    (world["root"] / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n")
    (world["host"] / "etc").mkdir()
    (world["host"] / "etc/passwd").write_text("app:x:7:7::/:/bin/sh\nhostonly:x:9:9::/:/bin/sh\n")
    with _fs(world) as fs:
        assert _container_ids(fs, "app") == (1000, 1001)
        assert _container_ids(fs, "42:43") == (42, 43)
    # /etc swapped for a link to the host's dir: still looked up inside the container.
    os.rename(world["root"] / "etc", world["root"] / "etc.real")
    os.symlink(str(world["host"] / "etc"), world["root"] / "etc")
    with _fs(world) as fs, pytest.raises(errdefs.InvalidArgument, match="hostonly"):
        _container_ids(fs, "hostonly")


def test_extract_fifo_and_ownership(world: dict[str, Path]) -> None:
    with _fs(world) as fs:
        fs.extract(_tar(_info("p", tarfile.FIFOTYPE, mode=0o640), (_info("f"), b"1")), "/tmp",
                   ExtractOptions(chown=(UID, GID)))  # fmt: skip
    st = os.lstat(world["root"] / "tmp/p")
    assert (st.st_mode & 0o7777, st.st_uid) == (0o640, UID) and os.path.stat.S_ISFIFO(st.st_mode)
