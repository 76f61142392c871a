"""`make bench`: berth, dockerd and podman side by side, driven by the same docker CLI.

Starts the three engines (bench/peers.py) on their own sockets, roots and bridges, loads the same
busybox and debian images into each, then runs every metric with the engines alternating run by
run (A B C A B C ...) and prints one table of medians with the ratios berth/dockerd and
berth/podman and, where one exists, the floor (a bare `crun run` for start latency, `sha256sum`
for load throughput). Writes the table as JSON and Markdown under bench/results/ and stops
everything it started. Figures only: nothing here passes or fails on a number.

    .venv/bin/python bench/side_by_side.py [--runs 10] [--engines berth,dockerd,podman] [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import REPO, BerthEngine, DockerdEngine, Engine, PodmanEngine, rss_kib

from testkit.fixtures import big_image_archive, busybox_rootfs_tar, debian_rootfs_tar
from testkit.registry import RegistryServer

Result = subprocess.CompletedProcess[str]


@dataclass
class Ctx:
    """An engine as the metrics see it: a docker CLI bound to its socket."""

    engine: Engine
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST=self.engine.host, DOCKER_BUILDKIT="0",
                        DOCKER_CONFIG=str(self.tmp / f"cli-{self.engine.name}"))

    def docker(self, *args: str, check: bool = True, timeout: float = 900, **kw: Any) -> Result:
        p = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, check=False, **kw)
        if check and p.returncode != 0:
            # The last line carries the daemon's error; earlier ones are CLI warnings.
            lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "docker run --help" not in ln]
            raise RuntimeError(f"docker {args[0]}: {lines[-1].strip() if lines else p.returncode}")
        return p

    def timed(self, *args: str, **kw: Any) -> float:
        t0 = time.perf_counter()
        self.docker(*args, **kw)
        return time.perf_counter() - t0

    def clear(self) -> None:
        ids = self.docker("ps", "-aq").stdout.split()
        for i in range(0, len(ids), 200):
            self.docker("rm", "-f", *ids[i:i + 200])


@dataclass
class Metric:
    """One row: name, unit, how to measure one sample on one engine, and optional floor."""

    name: str
    fn: Callable[[Ctx], float | list[float]]
    runs: int
    floor: Callable[[], float] | None = None


def _ms(s: float) -> float:
    return round(s * 1000, 1)


# -- metrics ----------------------------------------------------------------------------------


def run_true(c: Ctx) -> float:
    return _ms(c.timed("run", "--rm", "busybox", "true"))


def run_true_none(c: Ctx) -> float:
    return _ms(c.timed("run", "--rm", "--network", "none", "busybox", "true"))


def exec_true(c: Ctx) -> float:
    name = f"bx-{c.engine.name}"
    if c.docker("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
        c.docker("rm", "-f", name, check=False)
        c.docker("run", "-d", "--name", name, "busybox", "sleep", "3600")
    return _ms(c.timed("exec", name, "true"))


def fifty(c: Ctx) -> list[float]:
    """50 x run -d, then ps -a, monitor RSS, rm -f: four figures from one pass."""
    c.clear()
    t0 = time.perf_counter()
    ids = [c.docker("run", "-d", "busybox", "sleep", "3600").stdout.strip() for _ in range(50)]
    create = time.perf_counter() - t0
    ps = statistics.median(_ms(c.timed("ps", "-a")) for _ in range(5))
    rss = []
    for cid in ids[:10]:
        pid = c.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[1])
            rss.append(rss_kib(ppid) / 1024)
    t0 = time.perf_counter()
    c.docker("rm", "-f", *ids)
    rm = time.perf_counter() - t0
    return [round(create, 2), ps, round(statistics.mean(rss), 2) if rss else float("nan"), round(rm, 2)]


def ps_many_rss(count: int) -> Callable[[Ctx], list[float]]:
    """ps -a over ``count`` created containers, and the engine's RSS while it holds them."""
    def run(c: Ctx) -> list[float]:
        c.clear()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: c.docker("create", "busybox", "true"), range(count)))
        t = statistics.median(_ms(c.timed("ps", "-a")) for _ in range(5))
        time.sleep(1)
        rss = round(sum(rss_kib(p) for p in c.engine.engine_pids()) / 1024, 1)
        c.clear()
        return [t, rss]
    return run


def logs_throughput(mb: int) -> Callable[[Ctx], float]:
    def run(c: Ctx) -> float:
        line = "0123456789abcdefghijklmnopqrstuvwxyz" * 2
        script = f"yes {line} | head -c {mb}000000"
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as null:
            p = subprocess.run(["docker", "run", "--rm", "busybox", "sh", "-c", script], env=c.env,
                               stdout=null, stderr=subprocess.PIPE, timeout=1800, check=False)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.decode(errors="replace")[:300])
        return round(mb / (time.perf_counter() - t0), 1)
    return run


def load_save(c: Ctx) -> list[float]:
    archive = big_image_archive()
    c.docker("rmi", "-f", "berth-test/big:latest", check=False)
    size = archive.stat().st_size / 1e6
    load = c.timed("load", "-i", str(archive))
    out = c.tmp / f"save-{c.engine.name}.tar"
    save = c.timed("save", "-o", str(out), "berth-test/big:latest")
    out.unlink(missing_ok=True)
    return [round(size / load, 1), round(size / save, 1)]


def pull_push(registry: str, storage: Path) -> Callable[[Ctx], list[float]]:
    """Push the 317 MB image to a loopback registry, remove it, pull it back (MB/s each way).

    The registry's storage (``storage``; no blob cache configured) is emptied first, so every push
    uploads every layer instead of finding them there from an earlier run.
    """
    def run(c: Ctx) -> list[float]:
        shutil.rmtree(storage / "docker", ignore_errors=True)
        size = big_image_archive().stat().st_size / 1e6
        if c.docker("image", "inspect", "berth-test/big:latest", check=False).returncode != 0:
            c.docker("load", "-i", str(big_image_archive()))  # when run without load_save
        ref = f"{registry}/bench/big-{c.engine.name}:{time.monotonic_ns()}"
        c.docker("tag", "berth-test/big:latest", ref)
        push = c.timed("push", ref)
        c.docker("rmi", "-f", ref, "berth-test/big:latest")
        pull = c.timed("pull", ref)
        c.docker("tag", ref, "berth-test/big:latest")
        c.docker("rmi", ref)
        return [round(size / push, 1), round(size / pull, 1)]
    return run


def build(c: Ctx) -> list[float]:
    ctx = c.tmp / f"build-{c.engine.name}"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir()
    (ctx / "data.txt").write_text("x" * 4096)
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nCOPY data.txt /data.txt\n"
                                    'RUN echo built > /built\nCMD ["cat", "/built"]\n')
    tag = f"bench-build-{time.monotonic_ns()}"
    cold = c.timed("build", "--no-cache", "-q", "-t", tag, str(ctx))
    cached = c.timed("build", "-q", "-t", tag, str(ctx))
    c.docker("rmi", "-f", tag, check=False)
    return [_ms(cold), _ms(cached)]


def parallel_runs(n: int) -> Callable[[Ctx], list[float]]:
    def run(c: Ctx) -> list[float]:
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            times = sorted(pool.map(lambda _: run_true(c), range(n)))
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        return [statistics.median(times), p99]
    return run


def port_rps(c: Ctx) -> float:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk not installed")
    name = f"web-{c.engine.name}"
    c.docker("rm", "-f", name, check=False)
    c.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c",
             "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www")
    try:
        port = c.docker("port", name, "80/tcp").stdout.split(":")[-1].strip()
        deadline = time.monotonic() + 10
        while subprocess.run(["sh", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], executable="/bin/bash",
                             capture_output=True).returncode and time.monotonic() < deadline:
            time.sleep(0.1)
        out = subprocess.run(["wrk", "-t2", "-c16", "-d5s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return round(float(line.split()[1]), 0)
        raise RuntimeError(f"wrk printed no rate: {out[-200:]}")
    finally:
        c.docker("rm", "-f", name, check=False)


def idle_rss(c: Ctx) -> float:
    time.sleep(1)
    return round(sum(rss_kib(p) for p in c.engine.engine_pids()) / 1024, 1)


# -- floors -----------------------------------------------------------------------------------


def crun_floor(tmp: Path) -> Callable[[], float]:
    """A bare `crun run` of a busybox bundle, in a private mount ns without the cgroup2 mount."""
    bundle = tmp / "floor-bundle"

    def prepare() -> None:
        (bundle / "rootfs").mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(busybox_rootfs_tar()), "-C", str(bundle / "rootfs")], check=True)
        subprocess.run(["crun", "spec"], cwd=bundle, check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"].update(terminal=False, args=["true"])
        spec["process"].pop("rlimits", None)
        (bundle / "config.json").write_text(json.dumps(spec))

    def run() -> float:
        if not bundle.exists():
            prepare()
        script = ("mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified; "
                  f"exec crun --root {tmp}/crun-state run -b {bundle} floor-{os.getpid()}")
        t0 = time.perf_counter()
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       check=True, capture_output=True)
        return _ms(time.perf_counter() - t0)
    return run


def sha256_floor() -> float:
    archive = big_image_archive()
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", str(archive)], check=True, capture_output=True)
    return round(archive.stat().st_size / 1e6 / (time.perf_counter() - t0), 1)


# -- driver -----------------------------------------------------------------------------------


ROWS: dict[str, list[str]] = {
    "fifty": ["50 x run -d, sequential (s)", "ps -a, 50 running (ms)", "monitor RSS per container (MiB)",
              "rm -f of 50 running (s)"],
    "load_save": ["docker load, 317 MB (MB/s)", "docker save, 317 MB (MB/s)"],
    "build": ["classic build, cold (ms)", "classic build, all cached (ms)"],
    "pull_push": ["docker push, 317 MB, loopback registry (MB/s)",
                  "docker pull, 317 MB, loopback registry (MB/s)"],
    "parallel": ["32 parallel run --rm true, median (ms)", "32 parallel run --rm true, p99 (ms)"],
}


def metrics(args: argparse.Namespace, tmp: Path) -> list[Metric]:
    n = args.runs
    heavy = 1 if args.quick else 3
    ROWS["ps_many"] = [f"ps -a, {args.many} containers (ms)", f"engine RSS, {args.many} created (MiB)"]
    return [
        Metric("run --rm busybox true (ms)", run_true, n, crun_floor(tmp)),
        Metric("run --rm --network none busybox true (ms)", run_true_none, n),
        Metric("exec ctr true (ms)", exec_true, n),
        Metric("fifty", fifty, heavy),
        Metric("ps_many", ps_many_rss(args.many), 1),
        Metric(f"attached run writing {args.log_mb} MB (MB/s)", logs_throughput(args.log_mb), heavy),
        Metric("load_save", load_save, heavy),
        Metric("pull_push", pull_push(args.registry, args.registry_data), heavy),
        Metric("build", build, heavy),
        Metric("parallel", parallel_runs(32), heavy),
        Metric("published port, wrk 16 conns (req/s)", port_rps, heavy),
        Metric("engine RSS, idle (MiB)", idle_rss, 1),
    ]


def _rows(m: Metric) -> list[str]:
    return ROWS.get(m.name, [m.name])


def _cell(v: list[float] | str | None) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{statistics.median(v):g}"


def run_all(ctxs: list[Ctx], ms: list[Metric]) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    table: dict[str, dict[str, Any]] = {}
    floors: dict[str, float] = {}
    for m in ms:
        rows = _rows(m)
        for r in rows:
            table[r] = {c.engine.name: [] for c in ctxs}
        print(f"bench: {m.name} ({m.runs} runs)", file=sys.stderr, flush=True)
        for _ in range(m.runs):
            for c in ctxs:  # A B C A B C
                cells = table[rows[0]][c.engine.name]
                if isinstance(cells, str):
                    continue  # failed before: do not retry every run
                try:
                    got = m.fn(c)
                except Exception as e:  # a failure is a figure too: shown in the table
                    msg = f"error: {str(e).splitlines()[0][:80] if str(e) else type(e).__name__}"
                    if os.environ.get("BENCH_DEBUG"):
                        traceback.print_exc()
                    for r in rows:
                        table[r][c.engine.name] = msg
                    continue
                vals = got if isinstance(got, list) else [got]
                for r, v in zip(rows, vals, strict=True):
                    table[r][c.engine.name].append(v)
        if m.floor is not None:
            with contextlib.suppress(Exception):
                floors[rows[0]] = statistics.median(m.floor() for _ in range(max(3, m.runs // 2)))
    with contextlib.suppress(Exception):
        floors["docker load, 317 MB (MB/s)"] = sha256_floor()
        floors["docker pull, 317 MB, loopback registry (MB/s)"] = floors["docker load, 317 MB (MB/s)"]
    return table, floors


def render(table: dict[str, dict[str, Any]], floors: dict[str, float], names: list[str], runs: int) -> str:
    peers = [n for n in names if n != "berth"]
    head = ["metric", *names, *(f"berth/{p}" for p in peers), "floor"]
    out = [f"# berth side by side ({platform.node()}, {os.cpu_count()} CPUs, "
           f"{time.strftime('%Y-%m-%d %H:%M')}, medians; latency runs: {runs})", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row, per in table.items():
        cells = [row, *(_cell(per.get(n)) for n in names)]
        for p in peers:
            b, o = per.get("berth"), per.get(p)
            ok = isinstance(b, list) and isinstance(o, list) and b and o and statistics.median(o)
            cells.append(f"{statistics.median(b) / statistics.median(o):.2f}" if ok else "")  # type: ignore[arg-type]
        cells.append(f"{floors[row]:g}" if row in floors else "")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


@contextlib.contextmanager
def engines(names: list[str], base: Path, registry: str) -> Iterator[list[Engine]]:
    kinds = {"berth": BerthEngine, "dockerd": DockerdEngine, "podman": PodmanEngine}
    started: list[Engine] = []
    try:
        for n in names:
            eng = kinds[n](base)
            if isinstance(eng, PodmanEngine):
                eng.insecure.append(registry)
            started.append(eng)
            try:
                eng.start()
            except Exception as e:
                print(f"bench: {n} did not start, left out: {e}", file=sys.stderr)
                eng.stop()
                started.remove(eng)
        yield started
    finally:
        for eng in started:
            with contextlib.suppress(Exception):
                eng.stop()


def load_images(c: Ctx) -> None:
    c.docker("import", "-c", 'CMD ["sh"]', str(busybox_rootfs_tar()), "busybox:latest")
    c.docker("import", "-c", 'CMD ["bash"]', str(debian_rootfs_tar()), "debian:bookworm")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of each latency metric (default 10)")
    ap.add_argument("--engines", default="berth,dockerd,podman")
    ap.add_argument("--many", type=int, default=1000, help="containers for the large ps (default 1000)")
    ap.add_argument("--log-mb", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="one run of each heavy metric")
    ap.add_argument("--only", default="", help="comma-separated metric name prefixes to run")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    names = [n for n in args.engines.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="bb-", dir="/tmp") as t:
        tmp = Path(t)
        with RegistryServer(tmp / "registry") as reg, engines(names, tmp, reg.host) as engs:
            args.registry, args.registry_data = reg.host, reg.data
            ctxs = [Ctx(e, tmp) for e in engs]
            for c in ctxs:
                load_images(c)
            ms = metrics(args, tmp)
            if args.only:
                ms = [m for m in ms if any(m.name.startswith(p) for p in args.only.split(","))]
            table, floors = run_all(ctxs, ms)
            got = [e.name for e in engs]
    md = render(table, floors, got, args.runs)
    print(md)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out_dir / f"side-by-side-{stamp}.md").write_text(md)
    (args.out_dir / f"side-by-side-{stamp}.json").write_text(
        json.dumps({"engines": got, "runs": args.runs, "table": table, "floors": floors}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
