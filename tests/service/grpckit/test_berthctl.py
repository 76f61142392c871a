"""berthctl against small in-test System/Images servicers on unix sockets."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest

import errdefs
import grpckit
from berthapi.images.v1 import images_pb2, images_pb2_grpc
from berthapi.system.v1 import system_pb2, system_pb2_grpc
from berthctl.format import human_duration, human_size, split_ref
from berthctl.main import SERVICES, amain

NOW = datetime.now(UTC)
BUSYBOX_ID = "sha256:" + "b" * 64
DANGLING_ID = "sha256:" + "d" * 64
CONFIG = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}}


def _rfc3339(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


IMAGES = [
    images_pb2.Image(id=DANGLING_ID, created=_rfc3339(NOW - timedelta(days=20)), size=999,
                     containers=-1),
    images_pb2.Image(id=BUSYBOX_ID, repo_tags=["busybox:latest", "example.com:5000/bb:1"],
                     repo_digests=["busybox@sha256:" + "c" * 64],
                     created=_rfc3339(NOW - timedelta(hours=3)), size=4_270_000,
                     config_json=json.dumps(CONFIG).encode(), containers=2),
]


class FakeSystem(system_pb2_grpc.SystemServicer):
    """Answers Version/Info with fixed values."""

    async def Version(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return system_pb2.VersionResponse(version="0.1.0", api_version="1.50",
                                          min_api_version="1.24")

    async def Info(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return system_pb2.InfoResponse(data_root="/srv/berth-data", exec_root="/run/x",
                                       mode="embedded", node_id="node-1")


class FakeImages(images_pb2_grpc.ImagesServicer):
    """Serves the IMAGES list; GetImage matches ids and tags exactly."""

    async def ListImages(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return images_pb2.ListImagesResponse(images=IMAGES)

    async def GetImage(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        for img in IMAGES:
            if request.ref == img.id or request.ref in img.repo_tags:
                return images_pb2.GetImageResponse(image=img)
        raise errdefs.NotFound(f"No such image: {request.ref}")


SYSTEM = (system_pb2_grpc.add_SystemServicer_to_server, FakeSystem())
IMAGES_SVC = (images_pb2_grpc.add_ImagesServicer_to_server, FakeImages())

Serve = Callable[[Path, list[tuple[Any, Any]], list[str]], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start servers on demand; all stop at teardown."""
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())

        async def start(path: Path, servicers: list[tuple[Any, Any]], names: list[str]) -> None:
            server = grpckit.build_server(servicers, f"unix://{path}", names)
            await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.1))

        yield start
        tg.cancel_scope.cancel()


async def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = await amain(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.anyio
async def test_status_embedded(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "berthd.sock", [SYSTEM, IMAGES_SVC],
                [SERVICES["system"], SERVICES["images"]])
    rc, out, _ = await _run("--exec-root", str(tmp_path), "status")
    assert rc == 0  # services this daemon does not run are reported, not failures
    assert "NOT_REGISTERED" in out
    assert "Version:      0.1.0 (API 1.50, minimum 1.24)" in out
    assert "Data root:    /srv/berth-data" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()
            if line.split() and line.split()[0] in SERVICES}
    assert rows == {"system": "SERVING", "images": "SERVING", "containers": "NOT_REGISTERED",
                    "networks": "NOT_REGISTERED", "volumes": "NOT_REGISTERED",
                    "registry": "NOT_REGISTERED", "events": "NOT_REGISTERED"}


@pytest.mark.anyio
async def test_status_all_serving_exits_zero(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "d.sock", [SYSTEM, IMAGES_SVC], list(SERVICES.values()))
    rc, out, err = await _run("--address", f"unix://{tmp_path}/d.sock", "status")
    assert (rc, err) == (0, "")
    assert out.count("SERVING") == len(SERVICES)


@pytest.mark.anyio
async def test_status_split_mode(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "images.sock", [IMAGES_SVC, SYSTEM], [SERVICES["images"]])
    rc, out, _ = await _run("--exec-root", str(tmp_path), "status")
    assert rc == 1
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.split()}
    assert lines["images"][1:] == ["SERVING", f"unix://{tmp_path}/images.sock"]
    assert lines["volumes"][1:] == ["UNREACHABLE", f"unix://{tmp_path}/volumes.sock"]
    # No system.sock: System is asked where images answers.
    assert lines["system"][2] == f"unix://{tmp_path}/images.sock"
    assert "Data root:    /srv/berth-data" in out


@pytest.mark.anyio
async def test_images_ls_table(tmp_path: Path, serve: Serve,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    await serve(tmp_path / "berthd.sock", [SYSTEM, IMAGES_SVC], [])
    monkeypatch.setenv("BERTH_ADDRESS", f"unix://{tmp_path}/berthd.sock")
    rc, out, err = await _run("images", "ls")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert [ln.split() for ln in lines] == [
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
        ["busybox", "latest", "b" * 12, "3", "hours", "ago", "4.27MB"],
        ["example.com:5000/bb", "1", "b" * 12, "3", "hours", "ago", "4.27MB"],
        ["<none>", "<none>", "d" * 12, "2", "weeks", "ago", "999B"],
    ]
    # Columns line up: every row's IMAGE ID starts where the header's does.
    col = lines[0].index("IMAGE ID")
    assert all(ln[col:col + 12] in ("b" * 12, "d" * 12) for ln in lines[1:])


@pytest.mark.anyio
async def test_images_ls_json_and_quiet(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "berthd.sock", [SYSTEM, IMAGES_SVC], [])
    rc, out, _ = await _run("--exec-root", str(tmp_path), "images", "ls", "--format", "json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in rows] == [
        ("busybox", "latest", "b" * 12), ("example.com:5000/bb", "1", "b" * 12),
        ("<none>", "<none>", "d" * 12)]
    assert rows[0]["Digest"] == "sha256:" + "c" * 64 and rows[0]["Containers"] == "2"
    rc, out, _ = await _run("--exec-root", str(tmp_path), "images", "ls", "-q")
    assert out.split() == ["b" * 12, "d" * 12]


@pytest.mark.anyio
async def test_images_inspect(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "berthd.sock", [SYSTEM, IMAGES_SVC], [])
    rc, out, err = await _run("--exec-root", str(tmp_path), "images", "inspect", "busybox:latest")
    assert (rc, err) == (0, "")
    [doc] = json.loads(out)
    assert doc["Id"] == BUSYBOX_ID
    assert doc["RepoTags"] == ["busybox:latest", "example.com:5000/bb:1"]
    assert doc["Config"] == {"Cmd": ["sh"]} and doc["Os"] == "linux"
    assert doc["Size"] == 4_270_000


@pytest.mark.anyio
async def test_images_inspect_missing(tmp_path: Path, serve: Serve) -> None:
    await serve(tmp_path / "berthd.sock", [SYSTEM, IMAGES_SVC], [])
    rc, out, err = await _run("--exec-root", str(tmp_path), "images", "inspect", "nope")
    assert rc == 1
    assert err == "Error: No such image: nope\n"
    assert json.loads(out) == []


@pytest.mark.anyio
async def test_unreachable_daemon(tmp_path: Path) -> None:
    rc, out, err = await _run("--exec-root", str(tmp_path), "images", "ls")
    assert rc == 1 and out == ""
    assert err.startswith(f"Error: cannot connect to berth at unix://{tmp_path}/berthd.sock: "
                          "is berthd running?")
    rc, _, err = await _run("--exec-root", str(tmp_path), "status")
    assert rc == 1 and "cannot connect to berth" in err


def test_formatting_helpers() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 4_270_000, 1_234_567_890)] == \
        ["0B", "999B", "1kB", "4.27MB", "1.23GB"]
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 3599, 3600, 86400 * 3, 86400 * 20,
                                        86400 * 100, 86400 * 800)] == \
        ["Less than a second", "1 second", "59 seconds", "About a minute", "59 minutes",
         "About an hour", "3 days", "2 weeks", "3 months", "2 years"]
    assert split_ref("example.com:5000/a/b:1") == ("example.com:5000/a/b", "1")
    assert split_ref("example.com:5000/a/b") == ("example.com:5000/a/b", "")
    assert split_ref("busybox@sha256:abc") == ("busybox", "sha256:abc")
