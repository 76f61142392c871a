"""Real containers through conmon + crun/runc from a busybox rootfs (needs root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import errdefs
from ocirun import build_exec_process, parse_k8s_log_line

from .conftest import Lab

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


async def run_to_exit(lab: Lab, args: list[str], **kw: object) -> tuple[int, str, str]:
    cid, bundle, cfg = lab.new(args, **kw)
    log = bundle / "ctr.log"
    await lab.rt.create_and_start(cid, bundle, cfg, log_path=log)
    with anyio.fail_after(20):
        code = await lab.rt.wait_exit(cid)
    await lab.rt.delete(cid)
    out, err = b"", b""
    for line in log.read_bytes().splitlines(keepends=True):
        _, stream, partial, payload = parse_k8s_log_line(line)
        chunk = payload + (b"" if partial else b"\n")
        if stream == "stdout":
            out += chunk
        else:
            err += chunk
    return code, out.decode(), err.decode()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_exit_codes(lab: Lab) -> None:
    assert (await run_to_exit(lab, ["true"]))[0] == 0
    assert (await run_to_exit(lab, ["sh", "-c", "exit 3"]))[0] == 3


async def test_capabilities_in_container(lab: Lab) -> None:
    code, out, _ = await run_to_exit(lab, ["grep", "-E", "^Cap(Inh|Prm|Eff|Bnd|Amb)", "/proc/self/status"])
    assert code == 0
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps["CapInh"] == caps["CapAmb"] == "0000000000000000"
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == "00000000a80425fb"


async def test_masked_and_readonly_proc(lab: Lab) -> None:
    # /proc/kcore does not exist on this kernel; timer_list/interrupts/keys do and have content on the host.
    assert await anyio.Path("/proc/interrupts").read_text()
    _, out, err = await run_to_exit(
        lab,
        ["sh", "-c", "cat /proc/kcore; echo kcore=$?; wc -c < /proc/interrupts; wc -c < /proc/timer_list;"
         " echo 1 > /proc/sys/kernel/hostname; echo sys=$?; touch /sys/x; echo sysfs=$?"],
    )  # fmt: skip
    lines = out.split()
    assert "kcore=1" in lines
    assert lines[1] == "0" and lines[2] == "0"  # masked: /dev/null bound over them
    assert "sys=1" in lines and "sysfs=1" in lines
    assert "Read-only file system" in err


async def test_seccomp_denies_unshare(lab: Lab) -> None:
    code, _, err = await run_to_exit(lab, ["unshare", "-U", "true"])
    assert code != 0
    assert "Operation not permitted" in err
    # unconfined lets the same user-namespace unshare through
    code, _, _ = await run_to_exit(lab, ["unshare", "-U", "true"], seccomp="unconfined")
    assert code == 0


async def test_nofile_is_clamped(lab: Lab) -> None:
    code, out, _ = await run_to_exit(lab, ["sh", "-c", "ulimit -n; ulimit -Hn"])
    assert code == 0
    hard = lab.rt.host.rlimit_hard["RLIMIT_NOFILE"]
    assert [int(x) for x in out.split()] == [min(hard, 1048576)] * 2
    assert int(out.split()[0]) <= 20000


async def test_kill_sigterm_and_state(lab: Lab) -> None:
    cid, bundle, cfg = lab.new(["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done"])
    pid = await lab.rt.create_and_start(cid, bundle, cfg)
    state = await lab.rt.state(cid)
    assert state["status"] == "running" and state["pid"] == pid
    await anyio.sleep(0.3)  # let sh install the trap
    await lab.rt.kill(cid, signal.SIGTERM)
    with anyio.fail_after(10):
        assert await lab.rt.wait_exit(cid) == 42
    await lab.rt.delete(cid)
    with pytest.raises(errdefs.NotFound):
        await lab.rt.state(cid)


async def test_kill_unknown_signal_exit_code(lab: Lab) -> None:
    cid, bundle, cfg = lab.new(["sleep", "1000"])
    await lab.rt.create_and_start(cid, bundle, cfg)
    await lab.rt.kill(cid, "KILL")
    with anyio.fail_after(10):
        assert await lab.rt.wait_exit(cid) == 137


async def test_exec_output_and_exit_code(lab: Lab) -> None:
    cid, bundle, cfg = lab.new(["sleep", "1000"])
    await lab.rt.create_and_start(cid, bundle, cfg)
    log = bundle / "exec.log"
    session = await lab.rt.exec(
        cid, "e1", build_exec_process(cfg, ["sh", "-c", "echo hi; exit 5"]), log_path=log
    )
    with anyio.fail_after(10):
        assert await session.wait() == 5
    payloads = [parse_k8s_log_line(line)[3] for line in log.read_bytes().splitlines()]
    assert payloads == [b"hi"]
    with pytest.raises(errdefs.Internal):
        s = await lab.rt.exec(cid, "e2", build_exec_process(cfg, ["/no/such/binary"]))
        await s.wait()
    await lab.rt.kill(cid, signal.SIGKILL)
    with anyio.fail_after(10):
        await lab.rt.wait_exit(cid)


async def test_pause_resume(lab: Lab) -> None:
    cid, bundle, cfg = lab.new(["sleep", "1000"])
    pid = await lab.rt.create_and_start(cid, bundle, cfg)
    await lab.rt.pause(cid)
    assert (await lab.rt.state(cid))["status"] == "paused"
    assert (await anyio.Path(f"/proc/{pid}/stat").read_text()).split()[2] in ("D", "S")
    await lab.rt.resume(cid)
    assert (await lab.rt.state(cid))["status"] == "running"
    await lab.rt.update(cid, {"pids": {"limit": 50}})
    await lab.rt.delete(cid, force=True)
    assert not pid_alive(pid)


async def test_container_survives_its_starter_being_killed(lab: Lab, tmp_path: Path) -> None:
    cid, bundle, cfg = lab.new(["sleep", "1000"])
    (bundle / "config.json").write_text(json.dumps(cfg))
    script = textwrap.dedent(f"""
        import anyio, sys, time
        from ocirun import OciRuntime, detect_host_facts
        async def main():
            rt = OciRuntime({str(lab.rt.exec_root)!r}, detect_host_facts(), runtime={lab.rt.name!r})
            pid = await rt.create_and_start({cid!r}, {str(bundle)!r})
            print(pid, flush=True)
            await anyio.sleep(1000)
        anyio.run(main)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = await anyio.open_process([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    async with child:
        try:
            assert child.stdout is not None
            line = b""
            with anyio.fail_after(30):
                while not line.endswith(b"\n"):
                    line += await child.stdout.receive(1)
            pid = int(line)
            assert pid_alive(pid)
        finally:
            child.kill()  # SIGKILL: the starter dies without any cleanup
            await child.wait()
    await anyio.sleep(0.2)
    assert pid_alive(pid), "container died with the process that started it"
    assert (await lab.rt.state(cid))["status"] == "running"
    conmon = await lab.rt.conmon_pid(cid)
    assert conmon is not None and pid_alive(conmon)
    await lab.rt.kill(cid, signal.SIGKILL)
    with anyio.fail_after(10):
        assert await lab.rt.wait_exit(cid) == 137
    await lab.rt.delete(cid)


async def _host_mounts(lab: Lab) -> list[str]:
    """mountinfo lines, minus what other tests' daemons mount under /tmp meanwhile (not ours)."""
    ours = str(lab.base)
    lines = (await anyio.Path("/proc/self/mountinfo").read_text()).splitlines()
    return [ln for ln in lines
            if not (ln.split()[4].startswith("/tmp/") and not ln.split()[4].startswith(ours))]


async def test_no_mount_leaks_to_host(lab: Lab) -> None:
    before = await _host_mounts(lab)
    assert (await run_to_exit(lab, ["true"]))[0] == 0
    assert await _host_mounts(lab) == before
