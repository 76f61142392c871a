"""Benchmark volume I/O and copy-up on berth: named volume vs bind mount vs container rootfs vs host.

Prints a table (figures, never pass/fail) and writes JSON + Markdown under bench/results/.
Throughput is sequential `dd` (write with conv=fsync, then read straight back: caches cannot be
dropped here, so reads are page-cache reads). Copy-up times `docker run --rm -v <new volume>:/data`
on an image whose /data holds many small files against the same run with volume-nocopy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for sub in ("libs", "services"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

from testkit.berthd import BerthdProcess  # noqa: E402
from testkit.fixtures import busybox_rootfs_tar  # noqa: E402

Docker = Callable[..., "subprocess.CompletedProcess[str]"]
_READ_PASSES = 8  # page-cache reads are fast: repeat them so 10 ms stamps resolve them
_STAMP = re.compile(r"^T ([\d.]+)$", re.M)


def _cli(host: str) -> Docker:
    env = {**os.environ, "DOCKER_HOST": host}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=900)

    return run


def _ok(p: subprocess.CompletedProcess[str]) -> str:
    if p.returncode != 0:
        raise RuntimeError(f"{p.args}: {p.stderr.strip()}")
    return p.stdout + p.stderr


def _rates(output: str, mb: int) -> tuple[float, float]:
    """(write, read) MB/s from the three /proc/uptime stamps the dd script prints."""
    t = [float(x) for x in _STAMP.findall(output)]
    if len(t) != 3:
        raise RuntimeError(f"unexpected dd script output: {output!r}")
    size = mb * 1024 * 1024 / 1e6
    return size / max(t[1] - t[0], 0.01), _READ_PASSES * size / max(t[2] - t[1], 0.01)


def _dd_script(path: str, mb: int) -> str:
    # busybox dd prints no timing and busybox date has no %N: time with /proc/uptime (10 ms).
    stamp = "echo T $(cut -d' ' -f1 /proc/uptime)"
    return (f"{stamp} && dd if=/dev/zero of={path}/ddfile bs=1M count={mb} conv=fsync 2>/dev/null"
            f" && {stamp} && for _ in {' '.join(['x'] * _READ_PASSES)}; do"
            f" dd if={path}/ddfile of=/dev/null bs=1M 2>/dev/null; done && {stamp}"
            f" && rm -f {path}/ddfile")


def _manyfiles_tar(dest: Path, files: int) -> None:
    """The busybox rootfs plus /data holding ``files`` 64-byte files."""
    with tarfile.open(busybox_rootfs_tar()) as src, tarfile.open(dest, "w") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        d = tarfile.TarInfo("data")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        out.addfile(d)
        payload = b"x" * 64
        for i in range(files):
            ti = tarfile.TarInfo(f"data/f{i:05d}")
            ti.size = len(payload)
            out.addfile(ti, io.BytesIO(payload))


def throughput(docker: Docker, tmp: Path, mb: int, runs: int) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    bind = tmp / "bind"
    bind.mkdir()
    host = tmp / "host"
    host.mkdir()
    _ok(docker("volume", "create", "benchvol"))
    places: dict[str, Callable[[], str]] = {
        "named volume": lambda: _ok(docker("run", "--rm", "-v", "benchvol:/v", "busybox", "sh", "-c",
                                           _dd_script("/v", mb))),
        "bind mount": lambda: _ok(docker("run", "--rm", "-v", f"{bind}:/v", "busybox", "sh", "-c",
                                         _dd_script("/v", mb))),
        "container rootfs": lambda: _ok(docker("run", "--rm", "busybox", "sh", "-c",
                                               _dd_script("/tmp", mb))),
        "host": lambda: subprocess.run(["sh", "-c", _dd_script(str(host), mb)], check=True,
                                       capture_output=True, text=True).stdout,
    }
    for _ in range(runs):  # places alternate run by run
        for name, fn in places.items():
            w, r = _rates(fn(), mb)
            res.setdefault(f"{name}: write {mb} MiB, fsync (MB/s)", []).append(w)
            res.setdefault(f"{name}: read right after write, {_READ_PASSES} passes (MB/s)", []).append(r)
    _ok(docker("volume", "rm", "benchvol"))
    return res


def copy_up(docker: Docker, tmp: Path, files: int, runs: int) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    tar = tmp / "manyfiles.tar"
    _manyfiles_tar(tar, files)
    _ok(docker("import", "-c", 'CMD ["sh"]', str(tar), "manyfiles:latest"))
    tar.unlink()
    for i in range(runs):
        for label, how in (("copy-up", "copy"), ("volume-nocopy", "nocopy")):
            vol = f"fresh{how}{i}"
            args = (["-v", f"{vol}:/data"] if how == "copy" else
                    ["--mount", f"type=volume,src={vol},dst=/data,volume-nocopy"])
            t0 = time.perf_counter()
            _ok(docker("run", "--rm", *args, "manyfiles", "true"))
            res.setdefault(f"run --rm -v fresh:/data, {files} files, {label} (ms)", []).append(
                1000 * (time.perf_counter() - t0))
            count = _ok(docker("run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c",
                               "ls /data | wc -l")).strip()
            res.setdefault(f"files in the volume afterwards, {label}", []).append(float(count))
            _ok(docker("volume", "rm", vol))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-", dir="/tmp") as tmp:
        berthd = BerthdProcess(Path(tmp))
        berthd.start()
        try:
            docker = _cli(berthd.host)
            _ok(docker("import", "-c", 'CMD ["sh"]', str(busybox_rootfs_tar()), "busybox:latest"))
            raw: dict[str, list[float]] = {}
            raw.update(throughput(docker, Path(tmp), args.mb, args.runs))
            raw.update(copy_up(docker, Path(tmp), args.files, args.runs))
        finally:
            berthd.cleanup()
    table: dict[str, Any] = {m: statistics.median(v) for m, v in raw.items()}
    lines = ["| metric | median | runs |", "|---|---|---|"]
    for m, v in raw.items():
        lines.append(f"| {m} | {table[m]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    md = (f"# volumes benchmark ({platform.node()}, {os.cpu_count()} CPUs, medians of {args.runs})\n\n"
          f"Data root, bind source and host directory all on the filesystem of /tmp. Reads follow "
          f"the write at once (page cache; dropping caches is not allowed here), {_READ_PASSES} passes "
          f"over the file. Times come from /proc/uptime (10 ms).\n\n")
    md += "\n".join(lines) + "\n"
    print(md)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"volumes-{stamp}.md").write_text(md)
    (out / f"volumes-{stamp}.json").write_text(json.dumps({"medians": table, "runs": raw}, indent=2))


if __name__ == "__main__":
    main()
