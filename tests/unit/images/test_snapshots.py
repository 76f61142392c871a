"""Overlay snapshots: real mounts in a temporary data root, changes, reconcile, in-use images."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import errdefs
from images_svc.api import ImportOptions
from images_svc.model import Change, ChangeKind
from images_svc.service import ImagesService
from images_svc.snapshots import mount_points
from images_svc.store import SqlImageStore
from statestore import StateStore, open_store
from tests.unit.images.images_tarutil import E, make_tar
from tests.unit.images.mountutil import unmount_all_under

pytestmark = [pytest.mark.anyio, pytest.mark.needs_root]

NODE = "c" * 32
KEY = "1" * 64
KEY2 = "2" * 64
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
C, A, D = ChangeKind.MODIFIED, ChangeKind.ADDED, ChangeKind.DELETED

BASE = make_tar([
    E("bin/", type=tarfile.DIRTYPE, mode=0o755),
    E("bin/sh", data=b"#!shell", mode=0o755),
    E("etc/", type=tarfile.DIRTYPE, mode=0o755),
    E("etc/hostname", data=b"base\n"),
    E("etc/motd", data=b"welcome\n"),
    E("usr/", type=tarfile.DIRTYPE, mode=0o755),
    E("usr/share/", type=tarfile.DIRTYPE, mode=0o755),
    E("usr/share/doc/", type=tarfile.DIRTYPE, mode=0o755),
    E("usr/share/doc/readme", data=b"docs\n"),
    E("var/", type=tarfile.DIRTYPE, mode=0o755),
    E("var/lib/", type=tarfile.DIRTYPE, mode=0o755),
    E("var/lib/x/", type=tarfile.DIRTYPE, mode=0o755),
    E("var/lib/x/old", data=b"old\n"),
])
# A second layer that deletes etc/motd (an AUFS-style whiteout in the tar) and adds a file.
TOP = make_tar([
    E("etc/", type=tarfile.DIRTYPE, mode=0o755),
    E("etc/.wh.motd"),
    E("etc/layer2", data=b"two\n"),
])


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def docker_archive(layers: list[bytes], tag: str) -> bytes:
    """A docker-archive (docker save's manifest.json layout) of one image with ``layers``."""
    config = json.dumps({
        "architecture": ARCH, "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [_d(x) for x in layers]},
    }).encode()
    files = {f"l{i}.tar": x for i, x in enumerate(layers)}
    files[f"{_d(config)[7:]}.json"] = config
    files["manifest.json"] = json.dumps([{
        "Config": f"{_d(config)[7:]}.json", "RepoTags": [tag] if tag else [],
        "Layers": [f"l{i}.tar" for i in range(len(layers))],
    }]).encode()
    return make_tar([E(n, data=d) for n, d in files.items()])


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def import_tar(svc: ImagesService, data: bytes, repo: str = "") -> str:
    """docker import: returns the new image id."""
    events = [ev async for ev in svc.import_image(ImportOptions(repo=repo), _once(data))]
    return events[-1].status


async def load_tar(svc: ImagesService, data: bytes) -> None:
    async for _ in svc.load_images(_once(data), quiet=True):
        pass


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    try:
        yield root
    finally:
        unmount_all_under(tmp_path)  # even when the test failed half-way


@pytest.fixture
async def state(data_root: Path) -> AsyncIterator[StateStore]:
    st = await open_store(f"sqlite+aiosqlite:///{data_root / 'state.db'}")
    try:
        yield st
    finally:
        await st.aclose()


@pytest.fixture
def svc(data_root: Path, state: StateStore) -> ImagesService:
    return ImagesService(data_root, SqlImageStore(state, NODE), NODE)


def mounted(path: str | Path) -> bool:
    return str(path) in mount_points()


def names(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def is_dir(p: str | Path) -> bool:
    return os.path.isdir(p)


async def test_lower_files_visible_and_writes_go_to_upper(svc: ImagesService) -> None:
    image_id = await import_tar(svc, BASE, "snap/base")
    snap = await svc.prepare_snapshot(KEY, "snap/base", {"role": "web"})
    assert (snap.key, snap.image_id, snap.mounted, snap.labels) == (KEY, image_id, False, {"role": "web"})
    assert not mounted(snap.merged_dir)
    for d in (snap.upper_dir, snap.work_dir):
        st = os.stat(d)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)
    assert os.listdir(snap.upper_dir) == []

    snap = await svc.mount_snapshot(KEY)
    assert snap.mounted and mounted(snap.merged_dir)
    merged, upper = Path(snap.merged_dir), Path(snap.upper_dir)
    assert (merged / "etc/motd").read_bytes() == b"welcome\n"
    assert (merged / "bin/sh").read_bytes() == b"#!shell"

    (merged / "hello.txt").write_bytes(b"hi")
    (merged / "etc/motd").write_bytes(b"changed\n")
    assert (upper / "hello.txt").read_bytes() == b"hi"
    assert (upper / "etc/motd").read_bytes() == b"changed\n"
    [chain] = snap.chain_ids
    lower = svc.layers.diff_dir(chain)
    assert (lower / "etc/motd").read_bytes() == b"welcome\n"  # the layer is untouched
    assert not (lower / "hello.txt").exists()

    again = await svc.mount_snapshot(KEY)  # idempotent: no second, stacked mount
    assert again.mounted
    assert mount_points().count(snap.merged_dir) == 1
    assert (await svc.get_snapshot(KEY)).mounted

    off = await svc.unmount_snapshot(KEY)
    assert not off.mounted and not mounted(snap.merged_dir)
    assert not (await svc.unmount_snapshot(KEY)).mounted  # idempotent
    assert (upper / "hello.txt").read_bytes() == b"hi"  # the writable layer survives unmount
    assert [s.key for s in await svc.list_snapshots()] == [KEY]


async def test_whiteout_in_an_upper_layer_hides_a_lower_file(svc: ImagesService) -> None:
    await load_tar(svc, docker_archive([BASE, TOP], "snap/two:latest"))
    image = await svc.get_image("snap/two")
    assert len(image.chain_ids) == 2
    snap = await svc.prepare_snapshot(KEY, "snap/two", {})
    assert snap.chain_ids == image.chain_ids
    await svc.mount_snapshot(KEY)
    merged = Path(snap.merged_dir)
    assert not (merged / "etc/motd").exists()
    assert sorted(os.listdir(merged / "etc")) == ["hostname", "layer2"]
    assert (merged / "etc/layer2").read_bytes() == b"two\n"
    assert (merged / "bin/sh").read_bytes() == b"#!shell"
    # A deleted lower file is not a change of the container.
    assert await svc.snapshot_changes(KEY) == []


async def test_changes_for_add_modify_delete(svc: ImagesService) -> None:
    await import_tar(svc, BASE, "snap/base")
    snap = await svc.prepare_snapshot(KEY, "snap/base", {})
    assert await svc.snapshot_changes(KEY) == []
    await svc.mount_snapshot(KEY)
    m = Path(snap.merged_dir)
    (m / "etc/hostname").write_bytes(b"changed\n")  # modify
    (m / "etc/motd").unlink()  # delete: a whiteout in upper
    (m / "new/deeper").mkdir(parents=True)  # add, with children
    (m / "new/deeper/file").write_bytes(b"x")
    (m / "usr/share/doc/readme").unlink()
    (m / "usr/share/doc").rmdir()  # delete a directory
    (m / "var/lib/x/old").unlink()
    (m / "var/lib/x").rmdir()
    (m / "var/lib/x").mkdir()  # recreated: an opaque dir in upper
    assert os.getxattr(Path(snap.upper_dir) / "var/lib/x", "trusted.overlay.opaque") == b"y"

    assert await svc.snapshot_changes(KEY) == [
        Change("/etc", C),
        Change("/etc/hostname", C),
        Change("/etc/motd", D),
        Change("/new", A),
        Change("/new/deeper", A),  # under an added dir: still listed
        Change("/new/deeper/file", A),
        Change("/usr/share", C),
        Change("/usr/share/doc", D),
        Change("/var/lib", C),
        Change("/var/lib/x", C),  # opaque counts as modified
    ]
    # The same answer unmounted: it reads the upper dir only.
    await svc.unmount_snapshot(KEY)
    assert len(await svc.snapshot_changes(KEY)) == 10


async def test_changes_list_parents_of_adds_and_deletes_only(svc: ImagesService) -> None:
    await import_tar(svc, BASE, "snap/base")
    snap = await svc.mount_snapshot((await svc.prepare_snapshot(KEY, "snap/base", {})).key)
    m = Path(snap.merged_dir)
    # Rewriting a file copies its dirs up unchanged (same mode, size, mtime): only it is listed.
    (m / "usr/share/doc/readme").write_bytes(b"new docs\n")
    assert await svc.snapshot_changes(KEY) == [Change("/usr/share/doc/readme", C)]
    # An add in a dir whose mtime looks untouched still lists the dir, once, before it.
    lower_mtime = os.stat(svc.layers.diff_dir(snap.chain_ids[0]) / "bin").st_mtime_ns
    (m / "bin/a").write_bytes(b"a")
    (m / "bin/b").write_bytes(b"b")
    os.utime(m / "bin", ns=(lower_mtime, lower_mtime))
    assert await svc.snapshot_changes(KEY) == [
        Change("/bin", C), Change("/bin/a", A), Change("/bin/b", A),
        Change("/usr/share/doc/readme", C),
    ]


async def test_remove_unmounts_and_deletes_but_keeps_the_image(svc: ImagesService) -> None:
    image_id = await import_tar(svc, BASE, "snap/base")
    snap = await svc.prepare_snapshot(KEY, image_id, {})
    await svc.mount_snapshot(KEY)
    (Path(snap.merged_dir) / "data").write_bytes(b"payload")
    await svc.remove_snapshot(KEY)
    assert not mounted(snap.merged_dir)
    assert not Path(snap.upper_dir).parent.exists()
    with pytest.raises(errdefs.NotFound, match=f"No such snapshot: {KEY}"):
        await svc.get_snapshot(KEY)
    with pytest.raises(errdefs.NotFound):
        await svc.remove_snapshot(KEY)
    assert await svc.list_snapshots() == []
    # The last snapshot going does not delete the image; it can be removed now.
    assert (await svc.get_image("snap/base")).id == image_id
    items = await svc.remove_image(image_id, force=False, noprune=False)
    assert any(i.deleted == image_id for i in items)


async def test_an_image_with_snapshots_is_in_use(svc: ImagesService) -> None:
    image_id = await import_tar(svc, BASE, "snap/base")
    await svc.prepare_snapshot(KEY, "snap/base", {})
    short, key12 = image_id[7:19], KEY[:12]
    with pytest.raises(errdefs.Conflict) as info:
        await svc.remove_image(image_id, force=False, noprune=False)
    assert info.value.message == (
        f"conflict: unable to delete {short} (must be forced) - "
        f"image is being used by stopped container {key12}"
    )
    with pytest.raises(errdefs.Conflict, match='unable to remove repository reference "snap/base"'):
        await svc.remove_image("snap/base", force=False, noprune=False)
    report = await svc.prune_images({"dangling": ["false"]})
    assert report.deleted == []
    # Forced: untagged only, the record stays while the snapshot does.
    items = await svc.remove_image(image_id, force=True, noprune=False)
    assert [i.untagged for i in items] == ["snap/base:latest"]
    assert not any(i.deleted for i in items)
    rec = await svc.get_image(image_id)
    assert rec.repo_tags == []
    assert (await svc.prune_images({})).deleted == []  # dangling, but in use
    await svc.remove_snapshot(KEY)
    assert (await svc.get_image(image_id)).id == image_id
    pruned = await svc.prune_images({})
    assert [i.deleted for i in pruned.deleted if i.deleted][:1] == [image_id]


async def test_prepare_errors(svc: ImagesService) -> None:
    with pytest.raises(errdefs.NotFound, match="No such image: nothere"):
        await svc.prepare_snapshot(KEY, "nothere", {})
    await import_tar(svc, BASE, "snap/base")
    await svc.prepare_snapshot(KEY, "snap/base", {})
    upper = Path((await svc.get_snapshot(KEY)).upper_dir)
    (upper / "keep").write_bytes(b"mine")
    with pytest.raises(errdefs.AlreadyExists):
        await svc.prepare_snapshot(KEY, "snap/base", {})
    assert (upper / "keep").read_bytes() == b"mine"  # the existing snapshot is untouched
    for call in (svc.get_snapshot, svc.mount_snapshot, svc.unmount_snapshot,
                 svc.snapshot_changes, svc.remove_snapshot):
        with pytest.raises(errdefs.NotFound, match="No such snapshot"):
            await call(KEY2)


HOSTILE = [
    "", "..", "../../etc", "/" + "a" * 63, "a" * 63, "a" * 65, "A" * 64, "g" * 64,
    "a" * 64 + "\n", "a" * 63 + "/", "a" * 32 + "/../" + "a" * 28, " " + "a" * 63,
    "sha256:" + "a" * 64,
]


@pytest.mark.parametrize("key", HOSTILE, ids=repr)
async def test_hostile_keys_are_rejected(svc: ImagesService, data_root: Path, key: str) -> None:
    await import_tar(svc, BASE, "snap/base")
    before = names(data_root)
    with pytest.raises(errdefs.InvalidArgument, match="invalid snapshot key"):
        await svc.prepare_snapshot(key, "snap/base", {})
    for call in (svc.get_snapshot, svc.mount_snapshot, svc.unmount_snapshot,
                 svc.snapshot_changes, svc.remove_snapshot):
        with pytest.raises(errdefs.InvalidArgument):
            await call(key)
    assert names(data_root) == before
    assert os.listdir(data_root / "snapshots") == []


async def test_reconcile_keeps_mounted_snapshots_and_upper_content(
    data_root: Path, state: StateStore, svc: ImagesService
) -> None:
    await import_tar(svc, BASE, "snap/base")
    running = await svc.prepare_snapshot(KEY, "snap/base", {})
    await svc.mount_snapshot(KEY)
    (Path(running.merged_dir) / "live").write_bytes(b"still here")
    stopped = await svc.prepare_snapshot(KEY2, "snap/base", {})
    (Path(stopped.upper_dir) / "written").write_bytes(b"container data")
    # A crash took the work and merged dirs of one, and left half-made ones behind.
    os.rmdir(stopped.work_dir)
    os.rmdir(stopped.merged_dir)
    orphan = data_root / "snapshots" / ("9" * 64)
    (orphan / "upper").mkdir(parents=True)
    (orphan / "upper" / "f").write_bytes(b"x")
    (orphan / "merged").mkdir()
    (orphan / "work").mkdir()
    half = data_root / "snapshots" / "tmp-0123456789abcdef"
    (half / "upper").mkdir(parents=True)

    # berthd restarts: a new service over the same data root and records.
    again = ImagesService(data_root, SqlImageStore(state, NODE), NODE)
    await again.reconcile()
    assert sorted(os.listdir(data_root / "snapshots")) == [KEY, KEY2]
    assert mounted(running.merged_dir)
    assert (Path(running.merged_dir) / "live").read_bytes() == b"still here"
    assert (await again.get_snapshot(KEY)).mounted
    assert (Path(stopped.upper_dir) / "written").read_bytes() == b"container data"
    assert is_dir(stopped.work_dir) and is_dir(stopped.merged_dir)
    await again.mount_snapshot(KEY2)
    assert (Path(stopped.merged_dir) / "written").read_bytes() == b"container data"
    assert (Path(stopped.merged_dir) / "etc/motd").read_bytes() == b"welcome\n"


async def test_a_recorded_snapshot_whose_dir_vanished_is_recreated(
    data_root: Path, svc: ImagesService
) -> None:
    await import_tar(svc, BASE, "snap/base")
    snap = await svc.prepare_snapshot(KEY, "snap/base", {})
    for d in (snap.upper_dir, snap.work_dir, snap.merged_dir):
        os.rmdir(d)
    os.rmdir(Path(snap.upper_dir).parent)
    await svc.reconcile()
    assert os.listdir(snap.upper_dir) == []
    await svc.mount_snapshot(KEY)
    assert (Path(snap.merged_dir) / "bin/sh").exists()


async def test_an_image_without_layers_mounts_an_empty_lower(svc: ImagesService) -> None:
    await load_tar(svc, docker_archive([], "snap/empty:latest"))
    assert (await svc.get_image("snap/empty")).chain_ids == []
    snap = await svc.mount_snapshot((await svc.prepare_snapshot(KEY, "snap/empty", {})).key)
    merged = Path(snap.merged_dir)
    assert os.listdir(merged) == []
    (merged / "only").write_bytes(b"1")
    assert await svc.snapshot_changes(KEY) == [Change("/only", A)]
