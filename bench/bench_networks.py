"""Benchmark berth's networking: what network setup adds to `docker run`, and HTTP through a published port.

Prints a table (figures, never pass/fail) and writes JSON + Markdown under bench/results/.
- `docker run --rm busybox true` on the default bridge, `--network none` and `--network host`
  (median of --runs); the bridge minus none is the cost of the veth/bridge/address setup.
- requests per second of `wrk` (Debian) against busybox httpd in a container: through
  `-p 127.0.0.1::80` (nft DNAT) beside the same server reached directly at its address.
- with --dockerd-host, the same run latencies on a dockerd you started (BENCH-NOTES.md).
All traffic stays on loopback and berth's bridge.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for sub in ("libs", "services"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

from testkit.berthd import BerthdProcess  # noqa: E402
from testkit.fixtures import busybox_rootfs_tar  # noqa: E402

HTTPD = ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www"]
MODES = {"bridge": [], "none": ["--network", "none"], "host": ["--network", "host"]}


def _docker(host: str, *args: str) -> str:
    env = {**os.environ, "DOCKER_HOST": host}
    p = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def run_latency(host: str, runs: int) -> dict[str, float]:
    out = {}
    for mode, args in MODES.items():
        _docker(host, "run", "--rm", *args, "busybox", "true")  # warm up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            _docker(host, "run", "--rm", *args, "busybox", "true")
            times.append(time.perf_counter() - t)
        out[mode] = statistics.median(times) * 1000
    return out


def _wrk(url: str, seconds: int) -> float:
    cmd = ["wrk", "-t1", "-c8", f"-d{seconds}s", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"wrk {url}: {p.stdout}{p.stderr}")
    return float(m.group(1))


def http_rates(host: str, seconds: int) -> dict[str, float]:
    cid = _docker(host, "run", "-d", "-p", "127.0.0.1::80", "busybox", *HTTPD).strip()
    try:
        port = _docker(host, "port", cid, "80/tcp").splitlines()[0].rsplit(":", 1)[1]
        ip = json.loads(_docker(host, "inspect", cid))[0]["NetworkSettings"]["IPAddress"]
        time.sleep(0.5)
        return {"published (127.0.0.1 DNAT)": _wrk(f"http://127.0.0.1:{port}/", seconds),
                "direct (container address)": _wrk(f"http://{ip}/", seconds)}  # fmt: skip
    finally:
        _docker(host, "rm", "-f", cid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration per target")
    ap.add_argument("--dockerd-host", default="")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    ns = ap.parse_args()
    result: dict[str, Any] = {"runs": ns.runs, "load": os.getloadavg()}
    proc = BerthdProcess(Path(tempfile.mkdtemp(prefix="bnet-", dir="/tmp")))
    try:
        proc.start()
        proc.docker("import", str(busybox_rootfs_tar()), "busybox:latest")
        result["berth_run_ms"] = run_latency(proc.host, ns.runs)
        result["berth_http_rps"] = http_rates(proc.host, ns.seconds)
    finally:
        proc.cleanup()
    if ns.dockerd_host:
        result["dockerd_run_ms"] = run_latency(ns.dockerd_host, ns.runs)
    lines = ["| docker run --rm busybox true | berth (ms) |" + (" dockerd (ms) |" if ns.dockerd_host else ""),
             "|---|---|" + ("---|" if ns.dockerd_host else "")]  # fmt: skip
    for mode in MODES:
        row = f"| {mode} | {result['berth_run_ms'][mode]:.0f} |"
        if ns.dockerd_host:
            row += f" {result['dockerd_run_ms'][mode]:.0f} |"
        lines.append(row)
    lines += ["", "| HTTP to busybox httpd (wrk -t1 -c8) | requests/s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in result["berth_http_rps"].items()]
    table = "\n".join(lines)
    print(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ns.out_dir.mkdir(parents=True, exist_ok=True)
    (ns.out_dir / f"networks-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (ns.out_dir / f"networks-{stamp}.md").write_text(f"# networks {stamp}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
