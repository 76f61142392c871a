"""Restart policies across a berthd crash (kill -9) or stop (SIGTERM), and Docker's restart backoff."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from testkit.berthd import BerthdProcess
from testkit.fixtures import busybox_rootfs_tar

# First run: wait for berthd to be gone, exit with the code; later runs (restarts) stay up.
_ONCE = "if [ -f /ran ]; then exec sleep 1000; fi; touch /ran; sleep 3; exit {code}"


def _state(d: BerthdProcess, name: str) -> dict[str, object]:
    out = d.docker("inspect", "-f", "{{json .State}}", name).stdout
    st: dict[str, object] = json.loads(out)
    return st


def _run(d: BerthdProcess, name: str, policy: str, script: str) -> None:
    d.docker("run", "-d", "--name", name, "--restart", policy, "busybox", "sh", "-c", script)


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_policies_after_daemon_restart(fresh_berthd: BerthdProcess, how: str) -> None:
    d = fresh_berthd
    d.docker("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "busybox")
    # exit while berthd is down
    _run(d, "no-exit", "no", _ONCE.format(code=3))
    _run(d, "onfail-exit", "on-failure", _ONCE.format(code=4))
    _run(d, "onfail-zero", "on-failure", _ONCE.format(code=0))
    _run(d, "always-exit", "always", _ONCE.format(code=5))
    _run(d, "unless-exit", "unless-stopped", _ONCE.format(code=6))
    # crash-looping (in its backoff) when berthd goes
    _run(d, "always-loop", "always", "exit 1")
    # keep running across the restart
    _run(d, "unless-up", "unless-stopped", "exec sleep 1000")
    _run(d, "no-up", "no", "exec sleep 1000")
    # manually stopped before the restart
    _run(d, "always-stopped", "always", "exec sleep 1000")
    _run(d, "unless-stopped", "unless-stopped", "exec sleep 1000")
    d.docker("stop", "-t", "0", "always-stopped", "unless-stopped")
    # never started
    d.docker("create", "--name", "always-created", "--restart", "always", "busybox", "sleep", "1000")
    d.docker("create", "--name", "unless-created", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    pids = {n: _state(d, n)["Pid"] for n in ("unless-up", "no-up")}
    if how == "kill9":
        d.kill9()
    else:
        d.stop()
    time.sleep(4.5)  # the *-exit containers exit meanwhile
    d.start()

    deadline = time.monotonic() + 20
    want_running = {"onfail-exit", "always-exit", "unless-exit", "unless-up", "no-up", "always-stopped"}
    while time.monotonic() < deadline:
        if all(_state(d, n)["Running"] for n in want_running):
            break
        time.sleep(0.2)
    for n in want_running:
        assert _state(d, n)["Running"] is True, (n, _state(d, n))
    # re-adopted, not restarted
    for n, pid in pids.items():
        assert _state(d, n)["Pid"] == pid
    # the real exit codes of what exited while berthd was down
    st = _state(d, "no-exit")
    assert (st["Status"], st["ExitCode"]) == ("exited", 3)
    st = _state(d, "onfail-zero")
    assert (st["Status"], st["ExitCode"]) == ("exited", 0)
    assert _state(d, "unless-stopped")["Status"] == "exited"
    for n in ("always-created", "unless-created"):
        assert _state(d, n)["Status"] == "created"
    # the crash loop goes on under the new daemon
    first = json.loads(d.docker("inspect", "-f", "{{json .RestartCount}}", "always-loop").stdout)
    deadline = time.monotonic() + 10
    while json.loads(d.docker("inspect", "-f", "{{json .RestartCount}}", "always-loop").stdout) <= first:
        assert time.monotonic() < deadline, "no restart of always-loop after the daemon's start"
        time.sleep(0.2)
    assert _state(d, "always-loop")["Status"] in ("running", "restarting")
    # the restarted ones run their second life (the /ran marker), under the same record
    assert d.docker("exec", "always-exit", "ls", "/ran").returncode == 0
    # and the daemon controls them as usual
    d.docker("stop", "-t", "1", "unless-up")
    assert _state(d, "unless-up")["Status"] == "exited"
    time.sleep(0.5)
    assert _state(d, "unless-up")["Status"] == "exited"  # a manual stop is not undone


def _start_times(d: BerthdProcess, name: str, since: float, until: float) -> list[float]:
    out = d.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format",
                   "{{.TimeNano}}", "--filter", f"container={name}",
                   "--filter", "event=start").stdout  # fmt: skip
    return [int(x) / 1e9 for x in out.split()]


def test_restart_backoff_doubles(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    d.docker("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "busybox")
    since = time.time() - 1
    d.docker("run", "-d", "--name", "crashy", "--restart", "always", "busybox", "sh", "-c", "exit 1")
    time.sleep(4.0)  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of waits, plus the runs
    d.docker("stop", "-t", "0", "crashy")
    starts = _start_times(d, "crashy", since, time.time() + 1)
    assert len(starts) >= 5, starts
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each wait doubles (100 ms, 200 ms, 400 ms ...); the run itself adds a little to each gap
    for i, want in enumerate((0.1, 0.2, 0.4, 0.8)[: len(gaps)]):
        assert want <= gaps[i] < want + 0.6, (i, gaps)
    st = _state(d, "crashy")
    assert st["Status"] == "exited" and st["Restarting"] is False
    count = json.loads(d.docker("inspect", "-f", "{{json .RestartCount}}", "crashy").stdout)
    assert count == len(starts) - 1


def test_on_failure_retry_limit(fresh_berthd: BerthdProcess) -> None:
    d = fresh_berthd
    d.docker("import", "--change", "ENV PATH=/bin", str(busybox_rootfs_tar()), "busybox")
    d.docker("run", "-d", "--name", "limited", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 7")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        st = _state(d, "limited")
        if st["Status"] == "exited" and not st["Restarting"]:
            break
        time.sleep(0.1)
    assert (st["Status"], st["ExitCode"]) == ("exited", 7)
    assert json.loads(d.docker("inspect", "-f", "{{json .RestartCount}}", "limited").stdout) == 2
    # retries used up: the daemon's start does not try again
    d.restart()
    time.sleep(1.0)
    assert _state(d, "limited")["Status"] == "exited"
