"""docker exec through the real CLI (incl. -it in tmux) and docker-py's exec_run."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from testkit.berthd import BerthdProcess, DockerCLI

from .test_22_tty import _wait_for


@pytest.fixture
def ctr(docker: DockerCLI, busybox_image: str) -> Iterator[str]:
    name = f"x{uuid.uuid4().hex[:10]}"
    docker("run", "-d", "--name", name, "-e", "FROM_CTR=yes", "busybox", "sleep", "300")
    yield name
    docker("rm", "-f", name, check=False)


def test_exec_output_and_exit_codes(docker: DockerCLI, ctr: str) -> None:
    res = docker("exec", ctr, "echo", "hi")
    assert res.stdout == "hi\n" and res.stderr == ""
    res = docker("exec", ctr, "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert (res.returncode, res.stdout, res.stderr) == (7, "out\n", "err\n")
    res = docker("exec", ctr, "nosuchcmd", check=False)
    assert res.returncode == 126 and "executable file not found" in res.stdout + res.stderr  # as dockerd


def test_exec_stdin_env_workdir_user(docker: DockerCLI, ctr: str) -> None:
    data = "".join(f"line {i}\n" for i in range(500))
    assert docker("exec", "-i", ctr, "cat", input=data).stdout == data
    res = docker("exec", "-e", "EXTRA=1", ctr, "sh", "-c", "echo $FROM_CTR $EXTRA")
    assert res.stdout == "yes 1\n"
    assert docker("exec", "-w", "/tmp", ctr, "pwd").stdout == "/tmp\n"
    assert docker("exec", "-u", "nobody", ctr, "id", "-u").stdout == "65534\n"


def test_exec_detached_and_inspect_lists_exec(docker: DockerCLI, ctr: str) -> None:
    assert docker("exec", "-d", ctr, "sh", "-c", "echo done > /tmp/flag; sleep 2").stdout == ""
    assert docker("inspect", "-f", "{{len .ExecIDs}}", ctr).stdout.strip() == "1"
    deadline = time.monotonic() + 10
    while docker("exec", ctr, "cat", "/tmp/flag", check=False).stdout != "done\n":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_exec_on_stopped_container_fails(docker: DockerCLI, ctr: str) -> None:
    docker("kill", ctr)
    res = docker("exec", ctr, "true", check=False)
    assert res.returncode != 0 and "is not running" in res.stderr


def test_exec_run_dockerpy(dockerpy: Any, ctr: str) -> None:
    c = dockerpy.containers.get(ctr)
    code, output = c.exec_run("echo hi")
    assert (code, output) == (0, b"hi\n")
    code, (out, err) = c.exec_run(["sh", "-c", "echo o; echo e >&2; exit 3"], demux=True)
    assert (code, out, err) == (3, b"o\n", b"e\n")
    code, output = c.exec_run("id -u", user="nobody")
    assert (code, output) == (0, b"65534\n")
    res = c.exec_run("sleep 1", detach=True)
    assert res.exit_code is None and res.output == ""  # docker-py returns the (empty) body text


def test_exec_it_shell(berthd: BerthdProcess, ctr: str) -> None:
    sock, session = f"berth-{uuid.uuid4().hex[:8]}", "t"
    cmd = (f"DOCKER_HOST={berthd.host} DOCKER_CONFIG={berthd.base_dir}/docker-config "
           f"docker exec -it {ctr} sh; echo EXITED=$?; sleep 30")
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    cmd], check=True)
    try:
        _wait_for(sock, session, "/ #")
        subprocess.run(["tmux", "-L", sock, "send-keys", "-t", session, "echo $((6*7)); stty size",
                        "Enter"], check=True)
        _wait_for(sock, session, "42")
        _wait_for(sock, session, "30 100")
        subprocess.run(["tmux", "-L", sock, "send-keys", "-t", session, "exit 4", "Enter"], check=True)
        _wait_for(sock, session, "EXITED=4")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
