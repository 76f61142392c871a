"""Benchmark docker cp of one large file into and out of a running container against plain cp.

Prints a table (figures, never pass/fail) and writes JSON + Markdown under bench/results/. berth
runs on a fresh berthd; ``--peers dockerd,podman`` adds the engines of bench/peers.py, driven by the
same docker CLI. The file is random bytes (incompressible), the host page cache is warm for every
column, and each copy out is checked byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("libs", "services", "bench"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

from peers import BerthEngine, DockerdEngine, PodmanEngine  # noqa: E402

from testkit.fixtures import busybox_rootfs_tar  # noqa: E402


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _measure(host: str, src: Path, work: Path, runs: int) -> dict[str, list[float]]:
    env = {**os.environ, "DOCKER_HOST": host}

    def d(*args: str) -> None:
        subprocess.run(["docker", *args], env=env, check=True, capture_output=True, timeout=600)

    d("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "bench-cp-busybox:latest")
    d("run", "-d", "--network", "none", "--name", "bench-cp", "bench-cp-busybox", "sleep", "100000")
    out = work / "out.bin"
    times: dict[str, list[float]] = {"cp in": [], "cp out": []}
    try:
        for _ in range(runs):
            times["cp in"].append(_time(lambda: d("cp", str(src), "bench-cp:/tmp/big.bin")))
            out.unlink(missing_ok=True)
            times["cp out"].append(_time(lambda: d("cp", "bench-cp:/tmp/big.bin", str(out))))
            if out.read_bytes() != src.read_bytes():
                raise RuntimeError("copy out differs from the source")
    finally:
        subprocess.run(["docker", "rm", "-f", "bench-cp"], env=env, capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "bench-cp-busybox"], env=env, capture_output=True, check=False)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=100, help="file size in MiB (default 100)")
    ap.add_argument("--runs", type=int, default=5, help="runs per direction, median reported")
    ap.add_argument("--peers", default="", help="comma-separated: dockerd, podman")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cp-", dir="/tmp"))
    src, plain = work / "big.bin", work / "plain.bin"
    with open(src, "wb") as f:
        for _ in range(args.mb):
            f.write(os.urandom(1 << 20))
    kinds = {"berth": BerthEngine, "dockerd": DockerdEngine, "podman": PodmanEngine}
    names = ["berth", *[p for p in args.peers.split(",") if p]]
    results: dict[str, dict[str, list[float]]] = {}
    try:
        plain_times = []
        for _ in range(args.runs):
            plain.unlink(missing_ok=True)
            plain_times.append(_time(lambda: subprocess.run(["cp", str(src), str(plain)], check=True)))
        for name in names:
            engine = kinds[name](work / "engines")
            try:
                engine.start()
                results[name] = _measure(engine.host, src, work, args.runs)
            finally:
                engine.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_mb = args.mb * (1 << 20) / 1e6
    floor = statistics.median(plain_times)
    rows = [{"engine": "host", "what": "plain cp", "median_s": round(floor, 3),
             "mb_per_s": round(size_mb / floor, 1), "vs_plain_cp": 1.0}]  # fmt: skip
    for name, times in results.items():
        for what, ts in times.items():
            med = statistics.median(ts)
            rows.append({"engine": name, "what": what, "median_s": round(med, 3),
                         "mb_per_s": round(size_mb / med, 1), "vs_plain_cp": round(med / floor, 2),
                         "runs": [round(t, 3) for t in ts]})  # fmt: skip
    lines = [f"docker cp of a {args.mb} MiB file, {args.runs} runs, median",
             "", "| engine | | seconds | MB/s | x plain cp |", "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {r['engine']} | {r['what']} | {r['median_s']} | {r['mb_per_s']} | {r['vs_plain_cp']} |"
              for r in rows]  # fmt: skip
    print("\n".join(lines))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"cp-{stamp}.json").write_text(json.dumps({"mb": args.mb, "rows": rows}, indent=2) + "\n")
    (args.out_dir / f"cp-{stamp}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
