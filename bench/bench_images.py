"""Benchmark `docker load` / `docker save` of the big-3layer fixture: berth vs sha256sum and peers.

Prints a table (no pass/fail) and writes it as JSON and Markdown under bench/results/. Each berth
run uses a fresh berthd on a temp data root; dockerd and podman (when their DOCKER_HOSTs are given)
get `docker rmi -f` of the image before each load instead. See bench/README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "libs") not in sys.path:
    # Run as a plain script: make the repo's libs importable without an install.
    sys.path.insert(0, str(REPO / "libs"))

from testkit.berthd import DOCKER_CLI, BerthdError, BerthdProcess  # noqa: E402
from testkit.fixtures import BIG_IMAGE_REF, big_image_archive  # noqa: E402

MB = 1_000_000
# Let the daemon settle (GC, lazy imports) before reading its RSS.
RSS_SETTLE_S = 1.0


@dataclass
class EngineResult:
    """Per-run timings of one engine; RSS only for berthd."""

    load_s: list[float] = field(default_factory=list)
    save_s: list[float] = field(default_factory=list)
    save_bytes: list[int] = field(default_factory=list)
    rss_kib_start: list[int] = field(default_factory=list)
    rss_kib_after_load: list[int] = field(default_factory=list)
    error: str | None = None


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timed_docker(docker: Runner, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = docker(*args)
    return time.perf_counter() - t0, proc


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}")


def _load_and_save(docker: Runner, archive: Path, out_dir: Path, result: EngineResult) -> None:
    """One timed `docker load -i` then `docker save -o`; the image must not exist before."""
    seconds, loaded = _timed_docker(docker, "load", "-i", str(archive))
    _check(loaded, "docker load")
    if f"Loaded image: {BIG_IMAGE_REF}" not in loaded.stdout:
        raise RuntimeError(f"docker load did not report {BIG_IMAGE_REF}: {loaded.stdout!r}")
    result.load_s.append(seconds)
    out = out_dir / "saved.tar"
    seconds, saved = _timed_docker(docker, "save", "-o", str(out), BIG_IMAGE_REF)
    _check(saved, "docker save")
    result.save_s.append(seconds)
    result.save_bytes.append(out.stat().st_size)
    out.unlink()


def bench_floor(archive: Path, runs: int) -> list[float]:
    """sha256sum of the archive: reading and hashing the same bytes, the floor for both ops."""
    cmd = ["sha256sum", str(archive)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    return [
        _timed(lambda: subprocess.run(cmd, check=True, capture_output=True)) for _ in range(runs)
    ]


def bench_berth(archive: Path, runs: int, berthd: Path | None) -> EngineResult:
    result = EngineResult()
    for _ in range(runs):
        base = Path(tempfile.mkdtemp(prefix="berth-bench-", dir="/tmp"))
        proc = BerthdProcess(base, berthd=berthd)
        try:
            proc.start()
            time.sleep(RSS_SETTLE_S)
            result.rss_kib_start.append(proc.rss_kib())
            docker = functools.partial(proc.docker, check=False, timeout=1800)
            _load_and_save(docker, archive, base, result)
            time.sleep(RSS_SETTLE_S)
            result.rss_kib_after_load.append(proc.rss_kib())
        except (BerthdError, RuntimeError, subprocess.TimeoutExpired) as exc:
            result.error = str(exc)
            print(f"berth: {exc}", file=sys.stderr)
            break
        finally:
            try:
                proc.cleanup()
            except BerthdError as exc:
                result.error = result.error or str(exc)
                print(f"berth: {exc}", file=sys.stderr)
            shutil.rmtree(base, ignore_errors=True)
    return result


def bench_peer(name: str, host: str, archive: Path, runs: int) -> EngineResult:
    result = EngineResult()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=host, DOCKER_CONFIG=tmp, DOCKER_CLI_HINTS="false")

        def docker(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(DOCKER_CLI), *args], env=env, capture_output=True, text=True, timeout=1800
            )

        try:
            for _ in range(runs):
                docker("rmi", "-f", BIG_IMAGE_REF)
                _load_and_save(docker, archive, Path(tmp), result)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            result.error = str(exc)
            print(f"{name}: {exc}", file=sys.stderr)
        finally:
            docker("rmi", "-f", BIG_IMAGE_REF)
    return result


def _median(xs: list[float] | list[int]) -> float | None:
    return statistics.median(xs) if xs else None


def _cell(times: list[float], nbytes: int, ref: float | None = None, ref_name: str = "") -> str:
    t = _median(times)
    if t is None:
        return "n/a"
    text = f"{t:.2f} s ({nbytes / MB / t:.0f} MB/s)"
    if ref:
        text += f", {t / ref:.2f}x {ref_name}"
    return text


def render(report: dict[str, Any]) -> str:
    """The Markdown table printed and saved."""
    size: int = report["archive_bytes"]
    floor: list[float] = report["floor_sha256sum_s"]
    engines: dict[str, dict[str, Any]] = report["engines"]
    names = list(engines)
    berth = engines["berth"]
    lines = [
        f"# images benchmark, {report['timestamp']}",
        "",
        f"`{Path(report['archive']).name}`: {size / MB:.1f} MB, 3 uncompressed layers; "
        f"median of {report['runs']} runs; host {report['host']}, {report['cpus']} CPUs.",
        "Ratios in the berth column are to the sha256sum floor; in peer columns, berth/peer.",
        "",
        "| operation | sha256sum (floor) | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for op in ("load", "save"):
        cells = []
        for name in names:
            times: list[float] = engines[name][f"{op}_s"]
            if name == "berth":
                cells.append(_cell(times, size, _median(floor), "floor"))
            else:
                peer, ours = _median(times), _median(berth[f"{op}_s"])
                cell = _cell(times, size)
                if peer and ours:
                    cell += f", berth {ours / peer:.2f}x"
                cells.append(cell)
        lines.append(f"| docker {op} | {_cell(floor, size)} | " + " | ".join(cells) + " |")
    for key, label in (
        ("rss_kib_start", "berthd RSS, idle after start"),
        ("rss_kib_after_load", "berthd RSS, after load"),
    ):
        rss = _median(berth[key])
        value = f"{rss / 1024:.1f} MiB" if rss is not None else "n/a"
        lines.append(f"| {label} | | {value} |" + " |" * (len(names) - 1))
    for name in names:
        if engines[name]["error"]:
            lines.append(f"\n{name} error: {engines[name]['error']}")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per engine (median reported)")
    parser.add_argument("--archive", type=Path, help="default: the big-3layer fixture")
    parser.add_argument("--berthd", type=Path, help="berthd executable (default: the venv's)")
    parser.add_argument("--dockerd-host", help="DOCKER_HOST of a dockerd to compare with")
    parser.add_argument("--podman-host", help="DOCKER_HOST of a podman service to compare with")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    archive: Path = args.archive or big_image_archive()
    size = archive.stat().st_size
    print(f"archive {archive} ({size / MB:.1f} MB), {args.runs} runs", file=sys.stderr)
    floor = bench_floor(archive, args.runs)
    engines = {"berth": bench_berth(archive, args.runs, args.berthd)}
    for name, host in (("dockerd", args.dockerd_host), ("podman", args.podman_host)):
        if host:
            engines[name] = bench_peer(name, host, archive, args.runs)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    report: dict[str, Any] = {
        "benchmark": "images",
        "timestamp": stamp,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "archive": str(archive),
        "archive_bytes": size,
        "runs": args.runs,
        "floor_sha256sum_s": floor,
        "engines": {name: asdict(r) for name, r in engines.items()},
    }
    table = render(report)
    print(table)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(args.out_dir / f"images-{stamp}.json", json.dumps(report, indent=2) + "\n")
    _write_atomic(args.out_dir / f"images-{stamp}.md", table)
    print(f"results: {args.out_dir}/images-{stamp}.{{json,md}}", file=sys.stderr)
    return 1 if engines["berth"].error else 0


if __name__ == "__main__":
    sys.exit(main())
