"""Benchmark the classic builder: a cold and a fully cached `docker build` of a reference Dockerfile.

The reference build has several RUN steps, a COPY of 2,000 small files and a multi-stage COPY.
berth runs on a fresh berthd per run; a dockerd (or podman) you started is measured beside it when
its DOCKER_HOST is given (with DOCKER_BUILDKIT=0). Prints a table and writes JSON and Markdown
under bench/results/; never passes or fails on a number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _sub in ("libs", "services"):
    if str(REPO / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / _sub))

from testkit.berthd import DOCKER_CLI, BerthdProcess  # noqa: E402
from testkit.fixtures import busybox_rootfs_tar  # noqa: E402

FILES = 2000
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKERFILE = """\
FROM busybox AS gen
RUN mkdir /gen && for i in $(seq 1 200); do echo "$i" > /gen/$i; done
RUN echo generated > /gen/marker
FROM busybox
ENV APP=/app
WORKDIR /app
COPY files/ /app/files/
RUN ls /app/files | wc -l > /app/count
COPY --from=gen /gen /app/gen
RUN cat /app/gen/marker /app/count
CMD ["cat", "/app/count"]
"""


def make_context(root: Path) -> Path:
    ctx = root / "ctx"
    files = ctx / "files"
    for i in range(FILES):
        sub = files / f"d{i % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}.txt").write_text(f"file {i}\n" * 4)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def _docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DOCKER_CLI), *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _build(env: dict[str, str], ctx: Path, tag: str, *extra: str) -> float:
    t0 = time.perf_counter()
    res = _docker(env, "build", *extra, "-t", tag, str(ctx))
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"docker build failed: {res.stderr.strip()[-500:]}")
    return elapsed


def measure(env: dict[str, str], ctx: Path, runs: int) -> dict[str, list[float]]:
    """Per run: a cold build (--no-cache), then a rebuild served entirely from the cache."""
    out: dict[str, list[float]] = {"cold_s": [], "cached_s": []}
    tag = "bench-build:latest"
    for _ in range(runs):
        out["cold_s"].append(_build(env, ctx, tag, "--no-cache"))
        out["cached_s"].append(_build(env, ctx, tag))
    _docker(env, "rmi", "-f", tag)
    return out


def berth_runs(ctx: Path, runs: int, berthd: str | None) -> dict[str, list[float]]:
    base = Path(tempfile.mkdtemp(prefix="bb-b-", dir="/tmp"))
    proc = BerthdProcess(base, berthd=Path(berthd)) if berthd else BerthdProcess(base)
    proc.start()
    try:
        env = proc.docker_env()
        res = _docker(env, "import", "-c", f"ENV {PATH_ENV}", str(busybox_rootfs_tar()), "busybox:latest")
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        return measure(env, ctx, runs)
    finally:
        proc.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def peer_runs(host: str, ctx: Path, runs: int) -> dict[str, list[float]]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
    if _docker(env, "image", "inspect", "busybox:latest").returncode != 0:
        res = _docker(env, "import", "-c", f"ENV {PATH_ENV}", str(busybox_rootfs_tar()), "busybox:latest")
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
    return measure(env, ctx, runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--berthd", default=None, help="berthd executable (default: the venv's)")
    ap.add_argument("--dockerd-host", default="", help="DOCKER_HOST of a dockerd to compare with")
    ap.add_argument("--podman-host", default="", help="DOCKER_HOST of podman's API service")
    ap.add_argument("--out-dir", default=str(REPO / "bench" / "results"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-build-", dir="/tmp"))
    results: dict[str, Any] = {"host": platform.node(), "files": FILES, "runs": args.runs}
    status = 0
    try:
        ctx = make_context(work)
        engines: dict[str, dict[str, list[float]] | str] = {}
        try:
            engines["berth"] = berth_runs(ctx, args.runs, args.berthd)
        except (RuntimeError, OSError) as e:
            engines["berth"] = f"error: {e}"
            status = 1
        for name, host in (("dockerd", args.dockerd_host), ("podman", args.podman_host)):
            if host:
                try:
                    engines[name] = peer_runs(host, ctx, args.runs)
                except (RuntimeError, OSError) as e:
                    engines[name] = f"error: {e}"
        results["engines"] = engines
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["| engine | cold build (median) | fully cached (median) |", "|---|---|---|"]
    for name, r in results["engines"].items():
        if isinstance(r, str):
            lines.append(f"| {name} | {r} | |")
        else:
            lines.append(f"| {name} | {statistics.median(r['cold_s']):.2f} s | "
                         f"{statistics.median(r['cached_s']):.3f} s |")
    table = "\n".join(lines)
    print(f"classic build: {FILES} files COPYed, 4 RUN steps, 2 stages; {args.runs} runs\n")
    print(table)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"build-{stamp}.json").write_text(json.dumps(results, indent=2))
    (out / f"build-{stamp}.md").write_text(table + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
