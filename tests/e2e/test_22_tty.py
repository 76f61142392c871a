"""Interactive `docker run -it` in a real terminal (tmux), as a user types it."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from testkit.berthd import BerthdProcess


@pytest.fixture
def tmux() -> Iterator[tuple[str, str]]:
    sock, session = f"berth-{uuid.uuid4().hex[:8]}", "t"
    yield sock, session
    subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def _capture(sock: str, session: str) -> str:
    return subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", session],
                          capture_output=True, text=True, check=True).stdout


def _wait_for(sock: str, session: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _capture(sock, session)
        if text in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not on screen:\n{screen}")


def test_run_it_shell(berthd: BerthdProcess, busybox_image: str, tmux: tuple[str, str]) -> None:
    sock, session = tmux
    cmd = (f"DOCKER_HOST={berthd.host} DOCKER_CONFIG={berthd.base_dir}/docker-config "
           "docker run -it --rm busybox sh; echo EXITED=$?; sleep 30")
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    cmd], check=True)
    _wait_for(sock, session, "/ #")
    subprocess.run(["tmux", "-L", sock, "send-keys", "-t", session, "echo $((6*7)); stty size", "Enter"],
                   check=True)
    screen = _wait_for(sock, session, "42")
    assert "40 120" in _wait_for(sock, session, "40 120"), screen
    subprocess.run(["tmux", "-L", sock, "send-keys", "-t", session, "exit 5", "Enter"], check=True)
    _wait_for(sock, session, "EXITED=5")
