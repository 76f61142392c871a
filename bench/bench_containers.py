"""Benchmark container start latency and per-container memory: berth beside dockerd/podman.

Prints a table (figures and ratios, never pass/fail) and writes JSON + Markdown under
bench/results/. Engines are driven by the same docker CLI and alternated run by run. berth runs
on a fresh berthd; peers are given as --dockerd-host / --podman-host (already running, with a
`busybox:latest` image). The floor is a bare `crun run` of an equivalent bundle when possible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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


def _cli(host: str) -> Docker:
    env = {**os.environ, "DOCKER_HOST": host}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)

    return run


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _ok(p: subprocess.CompletedProcess[str]) -> None:
    if p.returncode != 0:
        raise RuntimeError(f"{p.args}: {p.stderr.strip()}")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _conmon_rss(names: list[str], docker: Docker) -> float:
    """Mean RSS (MiB) of the monitor process (conmon / shim) of running containers."""
    sizes = []
    for n in names:
        pid = docker("inspect", "-f", "{{.State.Pid}}", n).stdout.strip()
        if not pid or pid == "0":
            continue
        ppid = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[1]
        sizes.append(_rss_kib(int(ppid)) / 1024)
    return statistics.mean(sizes) if sizes else 0.0


def measure(engines: dict[str, Docker], runs: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {e: {} for e in engines}

    def add(engine: str, metric: str, value: float) -> None:
        results[engine].setdefault(metric, []).append(value)

    for _ in range(runs):  # A B C A B C: engines alternate run by run
        for name, docker in engines.items():
            add(name, "run --rm busybox true (ms)",
                1000 * _time(lambda d=docker: _ok(d("run", "--rm", "busybox", "true"))))
            add(name, "run --rm --network none busybox true (ms)",
                1000 * _time(lambda d=docker: _ok(d("run", "--rm", "--network", "none", "busybox", "true"))))
    for name, docker in engines.items():
        ids: list[str] = []

        def create_start(d: Docker = docker, ids: list[str] = ids) -> None:
            for _ in range(20):
                p = d("run", "-d", "busybox", "sleep", "600")
                _ok(p)
                ids.append(p.stdout.strip())

        add(name, "20 x run -d (s)", _time(create_start))
        add(name, "ps -a with 20 running (ms)", 1000 * _time(lambda d=docker: _ok(d("ps", "-a"))))
        add(name, "monitor RSS per container (MiB)", _conmon_rss(ids, docker))
        add(name, "rm -f of 20 running (s)",
            _time(lambda d=docker, ids=ids: _ok(d("rm", "-f", *ids))))
    return {e: {m: statistics.median(v) for m, v in ms.items()} for e, ms in results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dockerd-host")
    ap.add_argument("--podman-host")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-", dir="/tmp") as tmp:
        berthd = BerthdProcess(Path(tmp))
        berthd.start()
        try:
            engines: dict[str, Docker] = {"berth": _cli(berthd.host)}
            _ok(engines["berth"]("import", "-c", 'CMD ["sh"]', str(busybox_rootfs_tar()), "busybox:latest"))
            if args.dockerd_host:
                engines["dockerd"] = _cli(args.dockerd_host)
            if args.podman_host:
                engines["podman"] = _cli(args.podman_host)
            idle = _rss_kib(berthd.pid) / 1024
            table = measure(engines, args.runs)
            table["berth"]["berthd RSS idle (MiB)"] = idle
        finally:
            berthd.cleanup()
    metrics = list(table["berth"])
    header = ["metric", *engines] + [f"berth/{e}" for e in engines if e != "berth"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in metrics:
        row = [m] + [f"{table[e].get(m, float('nan')):.1f}" for e in engines]
        for e in engines:
            if e != "berth" and table[e].get(m):
                row.append(f"{table['berth'][m] / table[e][m]:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    md = f"# containers benchmark ({platform.node()}, {os.cpu_count()} CPUs, medians of {args.runs})\n\n"
    md += "\n".join(lines) + "\n"
    print(md)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"containers-{stamp}.md").write_text(md)
    (out / f"containers-{stamp}.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
