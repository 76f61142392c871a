"""e2e fixtures: a real berthd on a temp data root, driven by the real docker CLI and docker-py.

Fixtures:
    berthd: session-scoped ``BerthdProcess``, shared by all e2e tests.
    fresh_berthd: a daemon of the test's own (crash and restart tests).
    docker: ``berthd.docker`` - runs ``/usr/local/bin/docker *args`` against the session daemon.
    dockerpy: docker-py ``DockerClient`` for the session daemon, API version negotiated.
    busybox_image: id of ``busybox:latest``, imported once per session; tests must not remove it.

A failing test gets the tail of its daemon's log in the report. Every test here is marked ``e2e``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import BerthdError, BerthdProcess, DockerCLI
from testkit.fixtures import busybox_rootfs_tar

_HERE = Path(__file__).resolve().parent
_DAEMON_FIXTURES = ("berthd", "fresh_berthd")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: mark only the ones below tests/e2e.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and isinstance(item, pytest.Function):
        for name in _DAEMON_FIXTURES:
            proc = item.funcargs.get(name)
            if isinstance(proc, BerthdProcess):
                report.sections.append((f"{name} log", proc.log_tail(80)))
    return report


def _start(prefix: str) -> BerthdProcess:
    # Short dirs under /tmp, not tmp_path: the socket path must fit in 108 bytes.
    proc = BerthdProcess(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
    try:
        proc.start()
    except BerthdError as exc:
        error = str(exc)
    else:
        return proc
    _finish(proc, keep=True)
    pytest.fail(f"berthd did not start (log kept in {proc.base_dir}):\n{error}", pytrace=False)


def _finish(proc: BerthdProcess, keep: bool = False) -> None:
    """Clean up; keep the base dir (with the log) when the daemon misbehaved."""
    try:
        proc.cleanup()
    except BerthdError:
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(proc.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def berthd() -> Iterator[BerthdProcess]:
    """The session's daemon; its stop is checked (SIGTERM must suffice) at session end."""
    proc = _start("berth-e2e-")
    yield proc
    _finish(proc)


@pytest.fixture
def fresh_berthd() -> Iterator[BerthdProcess]:
    """A daemon for this test only, free to be killed and restarted."""
    proc = _start("berth-t-")
    yield proc
    _finish(proc)


@pytest.fixture
def docker(berthd: BerthdProcess) -> DockerCLI:
    """``docker(*args, input=None, check=True, timeout=300, text=True) -> CompletedProcess``."""
    return berthd.docker


@pytest.fixture
def dockerpy(berthd: BerthdProcess) -> Iterator[Any]:
    client = berthd.api_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(berthd: BerthdProcess) -> str:
    """``docker import`` the busybox rootfs as busybox:latest (ENV PATH, CMD sh: as on the Hub)."""
    tar = busybox_rootfs_tar()
    changes = ("--change", f"ENV PATH={_PATH}", "--change", 'CMD ["sh"]')
    out = berthd.docker("import", *changes, str(tar), "busybox:latest").stdout
    image_id = out.strip().splitlines()[-1] if out.strip() else ""
    if not image_id.startswith("sha256:"):
        pytest.fail(f"docker import printed no image id: {out!r}", pytrace=False)
    return image_id
