"""Benchmark `docker push` / `docker pull` of the big-3layer fixture through a loopback registry.

Prints MB/s of berth's push (first, with gzip; second, all layers present), pull (verify + unpack)
and `skopeo copy` of the same image out of the registry, beside `sha256sum` of the same bytes (the
floor), and berthd's CPU seconds per GB pulled. No pass/fail. Needs docker-registry and skopeo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "libs") not in sys.path:
    sys.path.insert(0, str(REPO / "libs"))

from testkit.berthd import BerthdProcess  # noqa: E402
from testkit.fixtures import BIG_IMAGE_REF, big_image_archive  # noqa: E402
from testkit.registry import RegistryServer  # noqa: E402

MB = 1_000_000


def _timed(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    archive = big_image_archive()
    base = Path(tempfile.mkdtemp(prefix="berth-bench-reg-", dir="/tmp"))
    proc = BerthdProcess(base / "d")
    try:
        with RegistryServer(base / "reg") as reg:
            proc.start()
            proc.docker("load", "-i", str(archive))
            ref = f"{reg.host}/bench/big:1"
            proc.docker("tag", BIG_IMAGE_REF, ref)
            floor = _timed(_run, ["sha256sum", str(archive)])
            size = archive.stat().st_size
            push1 = _timed(proc.docker, "push", ref)
            push2 = _timed(proc.docker, "push", ref)
            raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                                 check=True, capture_output=True, text=True).stdout
            gz = sum(int(layer["size"]) for layer in json.loads(raw)["layers"])
            skopeo_dir = base / "skopeo-out"
            sk = _timed(_run, ["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}",
                                         f"dir:{skopeo_dir}"])
            proc.docker("rmi", ref, BIG_IMAGE_REF)
            # The content store still holds the gzip blobs made by push: start from a clean daemon.
            proc.cleanup()
            shutil.rmtree(base / "d", ignore_errors=True)
            proc = BerthdProcess(base / "d")
            proc.start()
            assert proc.pid is not None
            cpu0 = _cpu_s(proc.pid)
            pull = _timed(proc.docker, "pull", ref)
            cpu = _cpu_s(proc.pid) - cpu0
        rows = [
            ("sha256sum of the archive (floor)", size, floor),
            ("berth push, first (gzip + upload)", size, push1),
            ("berth push, again (HEAD only)", size, push2),
            ("skopeo copy registry -> dir", gz, sk),
            ("berth pull (download + verify + unpack)", gz, pull),
        ]
        print(f"image: {BIG_IMAGE_REF}, archive {size / MB:.0f} MB, {gz / MB:.0f} MB gzipped in the registry")
        for name, nbytes, secs in rows:
            print(f"{name:45s} {secs:7.2f} s  {nbytes / MB / secs:8.1f} MB/s")
        print(f"berthd CPU per GB pulled (gzipped bytes): {cpu / (gz / 1e9):.1f} s")
    finally:
        proc.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
