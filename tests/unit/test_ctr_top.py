"""docker top rules: ps_args validation, ps output parsing and the not-running error."""

from __future__ import annotations

import pytest

import errdefs
from containers_svc.api import ContainerRecord, ContainerState, TopResult
from containers_svc.top import parse_ps_output, top, top_from_proto, top_to_proto, validate_ps_args

PS_EF = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init splash
root         100       1  0 10:01 ?        00:00:00 sh -c sleep 1000 & wait
root         101     100  0 10:01 ?        00:00:00 sleep 1000
user         200       1  0 10:02 pts/0    00:00:00 bash
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _rec(running: bool, restarting: bool = False) -> ContainerRecord:
    state = ContainerState(status="running" if running else "exited", running=running,
                           restarting=restarting, pid=100 if running else 0)  # fmt: skip
    return ContainerRecord(id="a" * 64, name="/c", created="", path="sh", args=[], config={},
                           host_config={}, networking_config={}, image="busybox", image_id="sha256:x",
                           state=state)  # fmt: skip


def test_parse_keeps_only_container_pids_and_joins_the_command() -> None:
    res = parse_ps_output(PS_EF, {100, 101})
    assert res.titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert [r[1] for r in res.processes] == ["100", "101"]
    assert res.processes[0][-1] == "sh -c sleep 1000 & wait"
    assert all(len(r) == len(res.titles) for r in res.processes)


def test_parse_thread_rows_follow_their_process() -> None:
    out = "PID LWP CMD\n100 100 a\n- 102 a\n200 200 b\n- 201 b\n"
    res = parse_ps_output(out, {100})
    assert res.processes == [["100", "100", "a"], ["-", "102", "a"]]


def test_parse_errors() -> None:
    with pytest.raises(errdefs.Internal, match="Couldn't find PID field in ps output"):
        parse_ps_output("USER COMMAND\nroot x\n", {1})
    with pytest.raises(errdefs.Internal, match="Unexpected pid 'abc'"):
        parse_ps_output("PID CMD\nabc x\n", {1})


def test_validate_ps_args() -> None:
    validate_ps_args("-ef")
    validate_ps_args("-o pid=PID,comm")
    with pytest.raises(errdefs.InvalidArgument, match='specifying "user=PID" is not allowed'):
        validate_ps_args("-o user=PID")


@pytest.mark.anyio
async def test_top_of_a_stopped_or_restarting_container_is_a_conflict() -> None:
    with pytest.raises(errdefs.Conflict, match=f"Container {'a' * 64} is not running"):
        await top(_rec(False), "")
    with pytest.raises(errdefs.Conflict, match="is restarting, wait until the container is running"):
        await top(_rec(True, restarting=True), "")


def test_proto_round_trip() -> None:
    res = TopResult(["PID", "CMD"], [["1", "sh -c x"], ["2", "sleep 1"]])
    assert top_from_proto(top_to_proto(res)) == res
