"""docker-py images.build against the classic builder, hostile contexts, ADD from URLs, interrupted builds."""

from __future__ import annotations

import http.server
import io
import signal
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.berthd import DOCKER_CLI, BerthdProcess, DockerCLI


def _tag() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tags(docker: DockerCLI) -> Iterator[list[str]]:
    out: list[str] = []
    yield out
    for t in out:
        docker("rmi", "-f", t, check=False)


def _tar(entries: list[tuple[str, bytes | None, str]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data, link in entries:
            ti = tarfile.TarInfo(name)
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
                tf.addfile(ti)
            else:
                ti.size, ti.mode = len(data or b""), 0o644
                tf.addfile(ti, io.BytesIO(data or b""))
    buf.seek(0)
    return buf


def _stream(dockerpy: Any, ctx: io.BytesIO, **kw: Any) -> list[dict[str, Any]]:
    return list(dockerpy.api.build(fileobj=ctx, custom_context=True, decode=True, rm=True, **kw))


def test_dockerpy_build_cache_args_labels(dockerpy: Any, busybox_image: str, tags: list[str],
                                          tmp_path: Path) -> None:
    import docker as dockerpy_mod

    tag = _tag()
    tags.append(tag)
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nARG GREETING=hi\nENV OUT=/greeting\nRUN echo \"$GREETING\" > $OUT\nCMD cat $OUT\n")
    # rm=True: docker-py's default keeps every intermediate container, as dockerd does.
    image, logs = dockerpy.images.build(path=str(tmp_path), tag=tag, buildargs={"GREETING": "hey"},
                                        labels={"built.by": "docker-py"}, rm=True)
    lines = [entry.get("stream", "") for entry in logs]
    assert any(line.startswith("Successfully built ") for line in lines)
    assert f"{tag}:latest" in image.tags and image.labels == {"built.by": "docker-py"}
    assert dockerpy.containers.run(tag, remove=True) == b"hey\n"
    again, logs2 = dockerpy.images.build(path=str(tmp_path), tag=tag, buildargs={"GREETING": "hey"},
                                         labels={"built.by": "docker-py"}, rm=True)
    assert again.id == image.id
    assert sum(" ---> Using cache" in e.get("stream", "") for e in logs2) == 5
    # Another build arg value misses the cache from the RUN on.
    other, _ = dockerpy.images.build(path=str(tmp_path), buildargs={"GREETING": "yo"}, rm=True)
    assert other.id != image.id
    hist = [h["CreatedBy"] for h in other.history()]
    assert any(h.startswith("|1 GREETING=yo /bin/sh -c echo") for h in hist), hist
    dockerpy.images.remove(other.id)
    with pytest.raises(dockerpy_mod.errors.BuildError) as ei:
        dockerpy.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 7\n"), rm=True, forcerm=True)
    assert "returned a non-zero code: 7" in str(ei.value)


def test_hostile_context_dotdot(dockerpy: Any, busybox_image: str) -> None:
    canary = Path(f"/tmp/berth-evil-{uuid.uuid4().hex}")
    ctx = _tar([("Dockerfile", b"FROM busybox\nCOPY . /\n", ""),
                ("../" * 12 + str(canary).lstrip("/"), b"pwned", "")])
    events = _stream(dockerpy, ctx)
    assert "error" in events[-1] and "not a valid tar archive" in events[-1]["error"], events
    assert not canary.exists()


def test_hostile_context_symlinks(dockerpy: Any, busybox_image: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_text("host secret")
    # An entry written through a symlink that points out of the context.
    ctx = _tar([("Dockerfile", b"FROM busybox\n", ""), ("out", None, str(victim)),
                ("out/pwned", b"x", "")])
    events = _stream(dockerpy, ctx)
    assert "error" in events[-1], events
    assert sorted(p.name for p in victim.iterdir()) == ["secret"]
    # COPY through a symlink that points out of the context reads nothing of the host.
    ctx = _tar([("Dockerfile", b"FROM busybox\nCOPY out/secret /stolen\n", ""),
                ("out", None, str(victim))])
    events = _stream(dockerpy, ctx)
    assert "forbidden path outside the build context" in events[-1].get("error", ""), events
    ctx = _tar([("Dockerfile", b"FROM busybox\nCOPY rel/secret /stolen\n", ""),
                ("rel", None, "../../../../../../../../" + str(victim).lstrip("/"))])
    events = _stream(dockerpy, ctx)
    assert "forbidden path outside the build context" in events[-1].get("error", ""), events


def test_not_a_tar_context(dockerpy: Any, busybox_image: str) -> None:
    events = _stream(dockerpy, io.BytesIO(b"\x01\x02 definitely not a tar " * 50))
    assert "not a valid tar archive" in events[-1].get("error", ""), events


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    def handler(*a: Any, **kw: Any) -> _Quiet:
        return _Quiet(*a, directory=str(root), **kw)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_add_url(dockerpy: Any, busybox_image: str, tags: list[str], http_dir: tuple[str, Path]) -> None:
    base, root = http_dir
    (root / "file.txt").write_text("over http\n")
    tag = _tag()
    tags.append(tag)
    ctx = _tar([("Dockerfile", f"FROM busybox\nADD {base}/file.txt /dl/\n".encode(), "")])
    events = _stream(dockerpy, ctx, tag=tag)
    assert "error" not in events[-1], events
    out = dockerpy.containers.run(tag, ["sh", "-c", "cat /dl/file.txt; stat -c %a /dl/file.txt"], remove=True)
    assert out == b"over http\n600\n"
    # Only loopback URLs are fetched; this one is refused before any packet leaves.
    ctx = _tar([("Dockerfile", b"FROM busybox\nADD http://192.0.2.1/x /x\n", "")])
    events = _stream(dockerpy, ctx)
    assert "only loopback URLs" in events[-1].get("error", ""), events


def test_interrupted_build_cleans_up(berthd: BerthdProcess, docker: DockerCLI, busybox_image: str,
                                     tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo started-long-step; sleep 60\n")
    proc = subprocess.Popen([str(DOCKER_CLI), "build", "--no-cache", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=berthd.docker_env(), text=True)
    cid = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Running in " in line:
                cid = line.split("Running in ", 1)[1].strip()
                break
        assert cid
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ps = docker("ps", "-a", "-q", "--no-trunc").stdout
        if not any(line.startswith(cid) for line in ps.split()):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"intermediate container {cid} still there after the client went away")
