"""Build context handling: safe unpacking, in-scope path resolution, the COPY content hash, layer tars."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import errdefs
from images_svc.build.context import glob, hash_sources, resolve_in_root, unpack_context
from images_svc.build.copier import CopyPlan, LayerTar, lookup_ids
from images_svc.commit import write_diff_tar


def _tar(entries: list[tuple[str, bytes | None, str]], end: bool = True) -> bytes:
    """entries: (name, data or None for a dir, symlink target or "")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                tf.addfile(ti)
            elif data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_unpack_context_and_resolve(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    data = _tar([("dir", None, ""), ("dir/f", b"hello", ""), ("in", None, "dir"),
                 ("out", None, "../../etc"), ("abs", None, "/etc")])
    unpack_context(io.BytesIO(data), ctx)
    assert resolve_in_root(ctx, "in/f", strict=True).read_bytes() == b"hello"
    assert resolve_in_root(ctx, "/dir/./f", strict=True) == ctx / "dir" / "f"
    for bad in ("../x", "dir/../../x", "out/passwd", "abs/passwd"):
        with pytest.raises(errdefs.InvalidArgument, match="forbidden path outside the build context"):
            resolve_in_root(ctx, bad, strict=True)
    # In an image root the same links stay inside: "/" and ".." stop at the root.
    assert resolve_in_root(ctx, "abs/passwd", strict=False) == ctx / "etc" / "passwd"
    assert resolve_in_root(ctx, "../../dir/f", strict=False) == ctx / "dir" / "f"


@pytest.mark.parametrize("name", ["../escape", "/abs/x", "a/../../escape"])
def test_hostile_context_rejected(tmp_path: Path, name: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with pytest.raises(errdefs.InvalidArgument):
        unpack_context(io.BytesIO(_tar([(name, b"x", "")])), ctx)
    assert not (tmp_path / "escape").exists() and not Path("/abs/x").exists()


def test_context_through_symlink_stays_inside(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    with pytest.raises(errdefs.InvalidArgument):
        unpack_context(io.BytesIO(_tar([("l", None, str(victim)), ("l/f", b"x", "")])), ctx)
    assert list(victim.iterdir()) == []


def test_unterminated_tar_from_the_go_cli(tmp_path: Path) -> None:
    # The CLI's rewritten contexts end right after the last file's data.
    full = _tar([("a", b"abc", ""), ("b", b"x" * 700, "")])
    cut = full[: 512 + 512 + 512 + 700]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    unpack_context(io.BytesIO(cut), ctx)
    assert (ctx / "b").read_bytes() == b"x" * 700


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(errdefs.InvalidArgument, match="not a valid tar"):
        unpack_context(io.BytesIO(b"this is not a tar archive at all" * 40), tmp_path)


def test_hash_sources_content_and_metadata_not_mtime(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    f = d / "f"
    f.write_text("one")
    h1 = hash_sources([d], keep_owner=False)
    os.utime(f, (1, 1))
    assert hash_sources([d], keep_owner=False) == h1
    f.chmod(0o600)
    h2 = hash_sources([d], keep_owner=False)
    assert h2 != h1
    f.write_text("two")
    assert hash_sources([d], keep_owner=False) not in (h1, h2)
    (d / "new").write_text("")
    assert hash_sources([f], keep_owner=False) != hash_sources([d], keep_owner=False)


def test_glob(tmp_path: Path) -> None:
    for n in ("a.txt", "b.txt", "c.md", "sub/d.txt"):
        (tmp_path / n).parent.mkdir(exist_ok=True)
        (tmp_path / n).write_text(n)
    assert glob(tmp_path, "*.txt") == ["a.txt", "b.txt"]
    assert glob(tmp_path, "sub/*.txt") == ["sub/d.txt"]
    assert glob(tmp_path, "[ab].*") == ["a.txt", "b.txt"]


def _layer(image_root: Path | None, plan: CopyPlan) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    lt = LayerTar(buf, image_root)
    lt.copy(plan)
    lt.close()
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        return {m.name: m for m in tf}


def test_copy_placement_rules(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "f").write_text("file")
    (src / "dir" / "sub" / "g").write_text("g")
    image = tmp_path / "image"
    (image / "existing").mkdir(parents=True)
    (image / "usr" / "lib").mkdir(parents=True)
    (image / "lib").symlink_to("usr/lib")
    # A file onto a name: that name; onto an existing dir or "dir/": inside it.
    out = _layer(image, CopyPlan([(src / "f", "f")], "/new/name", None, False, None, False))
    assert "new/name" in out and out["new"].isdir() and out["new/name"].uid == 0
    out = _layer(image, CopyPlan([(src / "f", "f")], "/existing", (5, 6), False, 0o700, False))
    assert "existing/f" in out and (out["existing/f"].uid, out["existing/f"].gid) == (5, 6)
    assert stat.S_IMODE(out["existing/f"].mode) == 0o700
    # A directory's contents go under the destination; symlinked parents of the image are followed.
    out = _layer(image, CopyPlan([(src / "dir", "dir")], "/lib/x", None, False, None, False))
    assert {"usr", "usr/lib", "usr/lib/x", "usr/lib/x/sub", "usr/lib/x/sub/g"} <= set(out)
    assert "lib" not in out
    with pytest.raises(errdefs.InvalidArgument, match="must be a directory and end with a /"):
        _layer(image, CopyPlan([(src / "f", "f"), (src / "dir", "dir")], "/two", None, False, None, False))


def test_add_extracts_local_tar(tmp_path: Path) -> None:
    arch = tmp_path / "a.tar"
    arch.write_bytes(_tar([("top", None, ""), ("top/inner", b"data", "")]))
    out = _layer(None, CopyPlan([(arch, "a.tar")], "/dst/", None, False, None, True))
    assert "dst/top/inner" in out
    out = _layer(None, CopyPlan([(arch, "a.tar")], "/dst/", None, False, None, False))
    assert "dst/a.tar" in out  # COPY never extracts
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar([("../../escape", b"x", "")]))
    with pytest.raises(errdefs.InvalidArgument):
        _layer(None, CopyPlan([(evil, "evil.tar")], "/dst/", None, False, None, True))


def test_chown_lookup(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    assert lookup_ids(tmp_path, "app") == (1000, 1001)
    assert lookup_ids(tmp_path, "app:staff") == (1000, 50)
    assert lookup_ids(tmp_path, "7") == (7, 7)
    assert lookup_ids(tmp_path, "7:8") == (7, 8)
    with pytest.raises(errdefs.InvalidArgument):
        lookup_ids(tmp_path, "nobody")
    with pytest.raises(errdefs.InvalidArgument):
        lookup_ids(None, "app")


@pytest.mark.needs_root
def test_diff_tar_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_text("hi")
    (upper / "etc" / "hosts").write_text("")  # an engine bind-mount target: left out
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    os.link(upper / "etc" / "motd", upper / "etc" / "motd2")
    buf = io.BytesIO()
    write_diff_tar(upper, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        names = {m.name: m for m in tf}
    assert "etc/.wh.gone" in names and names["etc/.wh.gone"].isreg()
    assert "opaque/.wh..wh..opq" in names
    assert "etc/hosts" not in names and "etc/gone" not in names
    assert names["etc/motd2"].islnk() and names["etc/motd2"].linkname == "etc/motd"


def test_commit_changes_use_the_dockerfile_rules() -> None:
    from images_svc.commit import apply_dockerfile_changes

    base = {"Env": ["PATH=/bin", "HOME=/root"], "Cmd": ["sh"], "WorkingDir": "/srv"}
    cfg = apply_dockerfile_changes(base, [
        'CMD ["run", "me"]', "ENTRYPOINT /entry", "ENV A=$HOME/x B=${NOPE:-dflt}",
        'LABEL "k"="v w"', "EXPOSE 80 53/udp", "WORKDIR sub\nUSER app", "VOLUME /data",
        "STOPSIGNAL SIGTERM", "HEALTHCHECK NONE", "ONBUILD RUN true",
    ])
    assert cfg["Cmd"] == ["run", "me"] and cfg["Entrypoint"] == ["/bin/sh", "-c", "/entry"]
    assert "A=/root/x" in cfg["Env"] and "B=dflt" in cfg["Env"]
    assert cfg["Labels"] == {"k": "v w"} and cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["WorkingDir"] == "/srv/sub" and cfg["User"] == "app" and cfg["Volumes"] == {"/data": {}}
    assert cfg["Healthcheck"] == {"Test": ["NONE"]} and cfg["OnBuild"] == ["RUN true"]
    assert base["Cmd"] == ["sh"]  # the input is not changed
    only_entry = apply_dockerfile_changes(base, ['ENTRYPOINT ["e"]'])
    assert only_entry["Cmd"] is None  # a new entrypoint drops the old default args
    for bad, msg in (("RUN true", "RUN is not a valid change command"),
                     ("FROM x", "FROM is not a valid change command"),
                     ("BOGUS x", "unknown instruction: BOGUS")):
        with pytest.raises(errdefs.InvalidArgument, match=msg):
            apply_dockerfile_changes(base, [bad])
