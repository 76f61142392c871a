"""Log drivers: json-file/local rotation (max-size, max-file, compress), reading across files, none."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import BerthdProcess

N_LINES = 300
# ~50 bytes a line, ~100 in the k8s-file log: 2k files hold about 20 lines each.
_WRITER = (
    f"sleep 1; i=0; while [ $i -lt {N_LINES} ]; do echo \"line-$i-abcdefghijklmnopqrstuvwxyz0123456789\"; "
    "i=$((i+1)); sleep 0.01; done"
)
_LINE = re.compile(r"^line-(\d+)-")


def _numbers(text: str) -> list[int]:
    out = []
    for ln in text.splitlines():
        m = _LINE.match(ln)
        assert m, f"unexpected log line {ln!r}"
        out.append(int(m.group(1)))
    return out


def _log_dir(d: BerthdProcess, cid: str) -> Path:
    return d.data_root / "containers" / cid


def _files(d: BerthdProcess, cid: str) -> list[str]:
    return sorted(p.name for p in _log_dir(d, cid).iterdir() if p.name.startswith("ctr.log"))


def _segments(d: BerthdProcess, cid: str) -> list[Path]:
    """The kept files of a rotating log (``ctr.log`` links the newest), oldest first."""
    segs = [p for p in _log_dir(d, cid).iterdir() if re.fullmatch(r"ctr\.log\.\d+(\.gz)?", p.name)]
    return sorted(segs, key=lambda p: int(p.name.split(".")[2]))


def _wait_exit(d: BerthdProcess, cid: str) -> None:
    assert d.docker("wait", cid, timeout=120).stdout.strip() == "0"


@pytest.fixture
def cleanup(berthd: BerthdProcess) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for cid in ids:
        berthd.docker("rm", "-f", cid, check=False)


def _follow(d: BerthdProcess, cid: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["docker", "logs", "-f", cid], env=d.docker_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_json_file_rotation_keeps_max_file_and_follow_reads_across(
    berthd: BerthdProcess, busybox_image: str, cleanup: list[str]
) -> None:
    d = berthd
    cid = d.docker("run", "-d", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "busybox",
                   "sh", "-c", _WRITER).stdout.strip()  # fmt: skip
    cleanup.append(cid)
    early = _follow(d, cid)
    time.sleep(3.0)  # a follower that starts after several rotations
    late = _follow(d, cid)
    try:
        _wait_exit(d, cid)
        out_early, err_early = early.communicate(timeout=60)
        out_late, _ = late.communicate(timeout=60)
    finally:
        for p in (early, late):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert early.returncode == 0, err_early
    # -f from the start sees every line once, in order, across all rotations
    assert _numbers(out_early) == list(range(N_LINES))
    nums_late = _numbers(out_late)
    assert nums_late == list(range(nums_late[0], N_LINES)) and nums_late[0] > 0

    deadline = time.monotonic() + 5
    while len(_segments(d, cid)) > 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the last pass after the exit prunes the segment conmon just closed
    segs = _segments(d, cid)
    assert len(segs) == 3, segs
    assert (_log_dir(d, cid) / "ctr.log").resolve() == segs[-1]
    for p in segs[:-1]:
        assert 1800 <= p.stat().st_size <= 2048, (p, p.stat().st_size)
    # after rotation: a contiguous tail of the output, oldest file first
    nums = _numbers(d.docker("logs", cid).stdout)
    assert nums == list(range(nums[0], N_LINES)) and nums[0] > 0 and len(nums) >= 40
    assert _numbers(d.docker("logs", "--tail", "5", cid).stdout) == list(range(N_LINES - 5, N_LINES))
    cfg = json.loads(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", cid).stdout)
    assert cfg == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "2k"}}


def test_json_file_max_size_alone_truncates(berthd: BerthdProcess, busybox_image: str,
                                            cleanup: list[str]) -> None:  # fmt: skip
    d = berthd
    cid = d.docker("run", "-d", "--log-opt", "max-size=2k", "busybox", "sh", "-c", _WRITER).stdout.strip()
    cleanup.append(cid)
    _wait_exit(d, cid)
    assert _files(d, cid) == ["ctr.log"]
    assert (_log_dir(d, cid) / "ctr.log").stat().st_size <= 2048
    nums = _numbers(d.docker("logs", cid).stdout)
    assert nums and nums == list(range(nums[0], N_LINES)) and nums[0] > 0


def test_local_driver_rotates_and_compresses_by_default(berthd: BerthdProcess, busybox_image: str,
                                                         cleanup: list[str]) -> None:  # fmt: skip
    d = berthd
    cid = d.docker("run", "-d", "--log-driver", "local", "--log-opt", "max-size=2k", "busybox",
                   "sh", "-c", _WRITER).stdout.strip()  # fmt: skip
    cleanup.append(cid)
    _wait_exit(d, cid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gz = [p.name.endswith(".gz") for p in _segments(d, cid)]
        if gz == [True] * 4 + [False]:
            break
        time.sleep(0.1)  # the last rotation is compressed once conmon let go of it
    assert gz == [True] * 4 + [False], _files(d, cid)
    nums = _numbers(d.docker("logs", cid).stdout)
    assert nums == list(range(nums[0], N_LINES)) and nums[0] > 0 and len(nums) >= 70
    typ = d.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", cid).stdout.strip()
    assert typ == "local"


def test_none_driver_keeps_no_log(berthd: BerthdProcess, busybox_image: str, cleanup: list[str]) -> None:
    d = berthd
    cid = d.docker("run", "-d", "--log-driver", "none", "busybox", "sh", "-c",
                   "echo hi; sleep 30").stdout.strip()
    cleanup.append(cid)
    res = d.docker("logs", cid, check=False)
    assert res.returncode != 0
    assert "configured logging driver does not support reading" in res.stderr
    assert d.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip() == "true"
    assert not (_log_dir(d, cid) / "ctr.log").exists()
    # attach still gets the output: the driver only decides what is kept
    out = d.docker("run", "--rm", "--log-driver", "none", "busybox", "echo", "attached").stdout
    assert out == "attached\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--log-driver", "nosuch"], "logger: no log driver named 'nosuch' is registered"),
    (["--log-opt", "max-size=lots"], "invalid size: 'lots'"),
    (["--log-opt", "max-size=-1"], "invalid size: '-1'"),
    (["--log-opt", "max-file=0", "--log-opt", "max-size=1m"], "max-file cannot be less than 1"),
    (["--log-opt", "max-file=x"], 'strconv.Atoi: parsing "x": invalid syntax'),
    (["--log-opt", "frobnicate=1"], "unknown log opt 'frobnicate' for json-file log driver"),
    (["--log-driver", "local", "--log-opt", "tag=x"], "unknown log opt 'tag' for log driver local"),
    (["--log-opt", "compress=true", "--log-opt", "max-size=1m"],
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
])  # fmt: skip
def test_bad_log_config_is_refused_at_create(berthd: BerthdProcess, busybox_image: str, args: list[str],
                                             message: str) -> None:  # fmt: skip
    d = berthd
    name = "badlog-" + str(abs(hash(tuple(args))) % 10**8)
    res = d.docker("create", "--name", name, *args, "busybox", "true", check=False)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert d.docker("ps", "-aq", "--filter", f"name=^{name}$").stdout.strip() == ""


def test_daemon_log_defaults_apply_to_new_containers(busybox_image: str) -> None:
    import shutil
    import tempfile

    from testkit.fixtures import busybox_rootfs_tar

    base = Path(tempfile.mkdtemp(prefix="berth-lg-", dir="/tmp"))
    d = BerthdProcess(base, extra_args=("--log-driver", "local", "--log-opt", "max-size=2k",
                                        "--log-opt", "max-file=2"))  # fmt: skip
    try:
        d.start()
        d.docker("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "busybox")
        cid = d.docker("run", "-d", "busybox", "sh", "-c", _WRITER).stdout.strip()
        cfg = json.loads(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", cid).stdout)
        assert cfg == {"Type": "local", "Config": {"max-file": "2", "max-size": "2k"}}
        # another driver named by the container does not inherit the daemon's opts
        other = d.docker("create", "--log-driver", "json-file", "busybox", "true").stdout.strip()
        cfg = json.loads(d.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", other).stdout)
        assert cfg == {"Type": "json-file", "Config": {}}
        _wait_exit(d, cid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            gz = [p.name.endswith(".gz") for p in _segments(d, cid)]
            if gz == [True, False]:
                break
            time.sleep(0.1)
        assert gz == [True, False], _files(d, cid)
        nums = _numbers(d.docker("logs", cid).stdout)
        assert nums == list(range(nums[0], N_LINES))
    finally:
        try:
            d.cleanup()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_rotation_while_berthd_is_down_stays_bounded(fresh_berthd: BerthdProcess) -> None:
    """conmon keeps one armed rotation, then truncates; berthd re-adopts and rotates on."""
    from testkit.fixtures import busybox_rootfs_tar

    d = fresh_berthd
    d.docker("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "busybox")
    slow = _WRITER.replace("sleep 0.01", "sleep 0.02")
    cid = d.docker("run", "-d", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "busybox",
                   "sh", "-c", slow).stdout.strip()  # fmt: skip
    time.sleep(2.0)
    d.kill9()
    time.sleep(3.0)  # several max-size worth of output with nobody arranging the files
    d.start()
    follow = _follow(d, cid)
    try:
        _wait_exit(d, cid)
        out, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    tail = _numbers(out)
    assert tail and tail == sorted(set(tail)) and tail[-1] == N_LINES - 1
    nums = _numbers(d.docker("logs", cid).stdout)
    assert nums == sorted(set(nums)) and nums[-1] == N_LINES - 1
    # berthd is back: the last files are whole segments again, and the disk use is bounded
    segs = _segments(d, cid)
    assert len(segs) <= 3
    total = sum(p.stat().st_size for p in _log_dir(d, cid).iterdir() if p.name.startswith("ctr.log")
                and not p.is_symlink())  # fmt: skip
    assert total <= 4 * 2048, _files(d, cid)
