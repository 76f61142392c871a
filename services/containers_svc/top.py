"""docker top: the host's ``ps`` output, kept to the rows whose PID is in the container's cgroup."""

from __future__ import annotations

import re
import subprocess

import anyio

import errdefs
from berthapi.containers.v1 import containers_pb2 as pb
from containers_svc.api import ContainerRecord, TopResult
from containers_svc.stats import cgroup_dirs, cgroup_pids

__all__ = [
    "DEFAULT_PS_ARGS",
    "parse_ps_output",
    "top",
    "top_from_proto",
    "top_to_proto",
    "validate_ps_args",
]

DEFAULT_PS_ARGS = "-ef"
# moby validatePSArgs: only "pid=PID..." may rename a PID column (the row filter needs it).
_PID_RENAME = re.compile(r"\s+([^\s]*)=\s*(PID[^\s]*)")
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def validate_ps_args(ps_args: str) -> None:
    """Raises errdefs.InvalidArgument ``specifying "k=PID" is not allowed`` as moby does."""
    for key, value in _PID_RENAME.findall(ps_args):
        if key != "pid":
            raise errdefs.InvalidArgument(f'specifying "{key}={value}" is not allowed')


def _fields(line: str) -> list[str]:
    return [f for f in _ASCII_SPACE.split(line) if f]


def parse_ps_output(output: str, pids: set[int]) -> TopResult:
    """moby parsePSOutput: titles from the first line; rows whose PID is in ``pids``.

    Extra fields are joined into the last column (the command with its arguments); a thread row
    (PID ``-``) belongs to the process row before it.

    Raises:
        errdefs.Internal: no PID column, or a PID that is not a number.
    """
    lines = output.split("\n")
    titles = _fields(lines[0]) if lines else []
    if "PID" not in titles:
        raise errdefs.Internal("Couldn't find PID field in ps output")
    idx = titles.index("PID")
    rows: list[list[str]] = []
    keep_threads = False
    for line in lines[1:]:
        fields = _fields(line)
        if len(fields) <= idx:
            continue
        if fields[idx] == "-":
            if keep_threads:
                rows.append(_row(fields, len(titles)))
            continue
        try:
            pid = int(fields[idx])
        except ValueError:
            raise errdefs.Internal(f"Unexpected pid '{fields[idx]}'") from None
        keep_threads = pid in pids
        if keep_threads:
            rows.append(_row(fields, len(titles)))
    return TopResult(titles, rows)


def _row(fields: list[str], ncols: int) -> list[str]:
    if len(fields) <= ncols:
        return fields + [""] * (ncols - len(fields))
    return [*fields[: ncols - 1], " ".join(fields[ncols - 1 :])]


async def _ps(args: list[str]) -> tuple[int, str, str]:
    proc = await anyio.run_process(["ps", *args], check=False, stdin=subprocess.DEVNULL)
    return proc.returncode or 0, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


async def top(rec: ContainerRecord, ps_args: str) -> TopResult:
    """Run ``ps`` for a running container (moby ContainerTop, Linux)."""
    st = rec.state
    if not st.running:
        raise errdefs.Conflict(f"Container {rec.id} is not running")
    if st.restarting:
        raise errdefs.Conflict(f"Container {rec.id} is restarting, wait until the container is running")
    ps_args = ps_args or DEFAULT_PS_ARGS
    validate_ps_args(ps_args)
    dirs = await anyio.to_thread.run_sync(cgroup_dirs, rec)
    pids = await anyio.to_thread.run_sync(cgroup_pids, dirs)
    if st.pid and not pids:
        pids = {st.pid}  # cgroup not readable (no pids/freezer controller): at least the init process
    args = ps_args.split(" ")  # as moby: split on single spaces, no shell quoting
    # Restrict ps to the container's pids when the options allow it; some (f) don't: retry.
    code, out, _err = await _ps([*args, "-q", ",".join(str(p) for p in sorted(pids))])
    if code != 0:
        code, out, err = await _ps(args)
        if code != 0:
            first = err.split("\n", 1)[0].strip() or f"exit status {code}"
            raise errdefs.Internal(f"ps: {first}")
    return parse_ps_output(out, pids)


def top_to_proto(r: TopResult) -> pb.TopContainerResponse:
    return pb.TopContainerResponse(titles=r.titles,
                                   processes=[pb.ProcessRow(values=row) for row in r.processes])  # fmt: skip


def top_from_proto(m: pb.TopContainerResponse) -> TopResult:
    return TopResult(list(m.titles), [list(row.values) for row in m.processes])
