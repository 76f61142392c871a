"""docker build through the real CLI (the classic builder, POST /build): steps, cache, stages, bad input."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.berthd import DockerCLI


def _tag() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


@pytest.fixture
def images(docker: DockerCLI) -> Iterator[list[str]]:
    """Tags to remove (with their intermediate images) after the test."""
    tags: list[str] = []
    yield tags
    for t in tags:
        docker("rmi", "-f", t, check=False)


def _ctx(tmp_path: Path, files: dict[str, str]) -> Path:
    ctx = tmp_path / "ctx"
    for name, text in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return ctx


def _image_id(docker: DockerCLI, ref: str) -> str:
    return str(docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip())


BASIC = """\
FROM busybox
ENV GREETING=hello
COPY a.txt /data/a.txt
RUN cat /data/a.txt > /data/r.txt && echo built-$GREETING
COPY b.txt /data/
CMD ["cat", "/data/r.txt"]
"""


def test_build_steps_cache_and_invalidation(
    docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path
) -> None:
    tag = _tag()
    images.append(tag)
    ctx = _ctx(tmp_path, {"Dockerfile": BASIC, "a.txt": "from a\n", "b.txt": "bee\n"})
    first = docker("build", "-t", tag, str(ctx))
    out = first.stdout
    for line in ("Step 1/6 : FROM busybox", "Step 4/6 : RUN cat /data/a.txt", " ---> Running in ",
                 "built-hello\n", " ---> Removed intermediate container ", "Successfully built ",
                 f"Successfully tagged {tag}:latest"):
        assert line in out, out
    assert "Using cache" not in out
    image_id = _image_id(docker, tag)
    assert docker("run", "--rm", tag).stdout == "from a\n"
    # Nothing changed: every step from the cache, the very same image.
    again = docker("build", "-t", tag, str(ctx)).stdout
    assert again.count(" ---> Using cache") == 5, again
    assert _image_id(docker, tag) == image_id
    # Touching a file's mtime alone does not invalidate; changing b.txt invalidates only its COPY on.
    (ctx / "b.txt").write_text("bee two\n")
    third = docker("build", "-t", tag, str(ctx)).stdout
    steps = third.split("Step ")
    assert " ---> Using cache" in steps[2] and " ---> Using cache" in steps[3]
    assert " ---> Using cache" in steps[4]  # the RUN after the unchanged COPY
    assert " ---> Using cache" not in steps[5] and " ---> Using cache" not in steps[6]
    assert _image_id(docker, tag) != image_id
    assert docker("run", "--rm", tag, "cat", "/data/b.txt").stdout == "bee two\n"
    # --no-cache rebuilds every step.
    fresh = docker("build", "--no-cache", "-t", tag, str(ctx)).stdout
    assert "Using cache" not in fresh


def test_history_and_config(docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path) -> None:
    tag = _tag()
    images.append(tag)
    df = """\
FROM busybox
LABEL org.example.a="one two" b=2
EXPOSE 8080 53/udp
ENV A=1 B="with space"
WORKDIR /srv/app
USER 1000:1000
VOLUME ["/vol"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s CMD true
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/echo"]
CMD ["x"]
"""
    ctx = _ctx(tmp_path, {"Dockerfile": df})
    docker("build", "-t", tag, str(ctx))
    cfg = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]
    assert cfg["Labels"] == {"org.example.a": "one two", "b": "2"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert "A=1" in cfg["Env"] and "B=with space" in cfg["Env"]
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "1000:1000"
    assert cfg["Volumes"] == {"/vol": {}} and cfg["StopSignal"] == "SIGUSR1"
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert cfg["Healthcheck"]["Interval"] == 5_000_000_000
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["OnBuild"] == ["RUN echo triggered"]
    assert cfg["Entrypoint"] == ["/bin/echo"] and cfg["Cmd"] == ["x"]
    hist = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "#(nop)  WORKDIR /srv/app" in hist and '#(nop)  CMD ["x"]' in hist
    # The WORKDIR was created in the image.
    assert docker("run", "--rm", "--entrypoint", "sh", tag, "-c", "pwd").stdout == "/srv/app\n"
    # ONBUILD triggers run in a child build.
    child = _tag()
    images.append(child)
    cctx = _ctx(tmp_path / "child", {"Dockerfile": f"FROM {tag}\nLABEL child=1\n"})
    out = docker("build", "-t", child, str(cctx)).stdout
    assert "# Executing 1 build trigger" in out and "triggered" in out, out
    ccfg = json.loads(docker("image", "inspect", child).stdout)[0]["Config"]
    assert not ccfg.get("OnBuild")


def test_multistage_target_args(
    docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path
) -> None:
    tag, tgt = _tag(), _tag()
    images.extend([tag, tgt])
    df = """\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG WHO=nobody
RUN mkdir -p /out && echo "made by $WHO" > /out/artifact && chown 1:2 /out/artifact
FROM scratch AS empty
LABEL stage=empty
FROM $BASE
ARG WHO
COPY --from=builder /out/artifact /final/
COPY --from=builder --chown=nobody /out/artifact /final/owned
RUN test "$WHO" = "me" && stat -c '%u:%g' /final/artifact /final/owned
"""
    ctx = _ctx(tmp_path, {"Dockerfile": df})
    out = docker("build", "--build-arg", "WHO=me", "-t", tag, str(ctx)).stdout
    assert "Step 1/11 : ARG BASE=busybox" in out
    # --from keeps the owner; --chown=nobody takes the ids from the image's /etc/passwd and group.
    assert "1:2\n65534:65534\n" in out, out
    assert docker("run", "--rm", tag, "cat", "/final/artifact").stdout == "made by me\n"
    # --target stops at the named stage; a missing one is an error.
    out = docker("build", "--target", "builder", "--build-arg", "WHO=t", "-t", tgt, str(ctx)).stdout
    assert "Step 4/4" in out and "FROM scratch" not in out
    assert docker("run", "--rm", tgt, "cat", "/out/artifact").stdout == "made by t\n"
    bad = docker("build", "--target", "nope", str(ctx), check=False)
    assert bad.returncode != 0 and "failed to reach build target nope" in bad.stderr


def test_dockerignore_and_globs(
    docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path
) -> None:
    tag = _tag()
    images.append(tag)
    files = {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\nCOPY *.txt /globbed/\nRUN find /ctx /globbed | sort\n",
        ".dockerignore": "# comment\n*.md\n!keep.md\n**/secret*\n/build\n",
        "a.txt": "a", "b.txt": "b", "x.md": "x", "keep.md": "k", "sub/secret.key": "s",
        "sub/deep/secret2": "s", "sub/ok": "o", "build/out": "o", "sub/build/kept": "k",
    }
    ctx = _ctx(tmp_path, files)
    out = docker("build", "-t", tag, str(ctx)).stdout
    listing = docker("run", "--rm", tag, "find", "/ctx", "/globbed", "-type", "f").stdout.split()
    assert "/ctx/a.txt" in listing and "/ctx/keep.md" in listing and "/ctx/sub/ok" in listing
    assert "/ctx/sub/build/kept" in listing  # a leading "/" anchors at the root only
    for gone in ("/ctx/x.md", "/ctx/sub/secret.key", "/ctx/sub/deep/secret2", "/ctx/build/out"):
        assert gone not in listing, (gone, out)
    assert sorted(p for p in listing if p.startswith("/globbed")) == ["/globbed/a.txt", "/globbed/b.txt"]


def test_dockerfile_outside_context_and_stdin(
    docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path
) -> None:
    tag, tag2 = _tag(), _tag()
    images.extend([tag, tag2])
    ctx = _ctx(tmp_path, {"f.txt": "context file\n"})
    outside = tmp_path / "elsewhere" / "My.Dockerfile"
    outside.parent.mkdir()
    outside.write_text("FROM busybox\nCOPY f.txt /f.txt\n")
    docker("build", "-f", str(outside), "-t", tag, str(ctx))
    assert docker("run", "--rm", tag, "cat", "/f.txt").stdout == "context file\n"
    # "-f -": the Dockerfile on stdin, the context from the directory.
    docker("build", "-f", "-", "-t", tag2, str(ctx), input="FROM busybox\nCOPY f.txt /g.txt\n")
    assert docker("run", "--rm", tag2, "cat", "/g.txt").stdout == "context file\n"
    # "-": a Dockerfile alone on stdin, no context.
    res = docker("build", "-q", "-", input="FROM busybox\nRUN echo quiet-build\n")
    assert res.stdout.strip().startswith("sha256:") and "quiet-build" not in res.stdout
    docker("rmi", res.stdout.strip(), check=False)


def test_failing_run_leaves_no_image(docker: DockerCLI, busybox_image: str, tmp_path: Path) -> None:
    tag = _tag()
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo before-fail; exit 3\nRUN echo never\n"})
    res = docker("build", "--force-rm", "-t", tag, str(ctx), check=False)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "before-fail" in res.stdout
    assert "The command '/bin/sh -c echo before-fail; exit 3' returned a non-zero code: 3" in res.stderr
    assert "never" not in res.stdout
    assert docker("image", "inspect", tag, check=False).returncode != 0
    # --force-rm: the failed step's container is gone too.
    ps = docker("ps", "-a", "--format", "{{.Command}}", "--no-trunc").stdout
    assert "before-fail" not in ps


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("FROM busybox\nFOO bar\n", "unknown instruction: FOO"),
        ("FROM busybox\nCOPY ../x /x\n", "forbidden path outside the build context"),
        ("FROM busybox\nCOPY nope /x\n", "file not found in build context"),
        ("FROM 127.0.0.1:9/nosuchimage-xyz\n", "127.0.0.1:9"),  # nothing listens: refused
        ("RUN true\n", "no build stage in current context"),
        ("# escape=x\nFROM busybox\n", "invalid escape token"),
    ],
)
def test_bad_dockerfiles(docker: DockerCLI, busybox_image: str, tmp_path: Path, dockerfile: str,
                         message: str) -> None:
    ctx = _ctx(tmp_path, {"Dockerfile": dockerfile})
    res = docker("build", str(ctx), check=False)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr


def test_unknown_instruction_names_line(docker: DockerCLI, busybox_image: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\n\nRUN true\nBOGUS x\n"})
    res = docker("build", str(ctx), check=False)
    assert "line 4" in res.stderr, res.stderr


def test_symlink_out_of_context(docker: DockerCLI, busybox_image: str, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"Dockerfile": "FROM busybox\nCOPY escape/passwd /x\n"})
    (ctx / "escape").symlink_to("/etc")
    res = docker("build", str(ctx), check=False)
    assert res.returncode != 0
    assert "forbidden path outside the build context" in res.stderr, res.stderr


def test_tags_add_tar_run_options_and_failed_build_keeps_tag(
    docker: DockerCLI, busybox_image: str, images: list[str], tmp_path: Path
) -> None:
    import io
    import tarfile

    t1, t2 = _tag(), _tag()
    images.extend([t1, f"{t2}:v2"])
    ctx = _ctx(tmp_path, {"Dockerfile": (
        "FROM busybox\nADD bundle.tar.gz /opt/\nCOPY bundle.tar.gz /raw/\n"
        "RUN cat /opt/pkg/hello && ls /raw && grep -c myhost /etc/hosts && "
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes\n")})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"from the tarball\n"
        ti = tarfile.TarInfo("pkg/hello")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    (ctx / "bundle.tar.gz").write_bytes(buf.getvalue())
    out = docker("build", "-t", t1, "-t", f"{t2}:v2", "--add-host", "myhost:10.1.2.3",
                 "--network", "none", "-m", "64m", str(ctx)).stdout
    # ADD unpacks a local tarball, COPY does not; --add-host and -m reach the RUN container.
    assert "from the tarball\nbundle.tar.gz\n1\n67108864\n" in out, out
    assert f"Successfully tagged {t1}:latest" in out and f"Successfully tagged {t2}:v2" in out
    good = _image_id(docker, t1)
    assert _image_id(docker, f"{t2}:v2") == good
    # A failing build moves no tag.
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo changed > /x && false\n")
    res = docker("build", "--force-rm", "-t", t1, str(ctx), check=False)
    assert res.returncode == 1
    assert _image_id(docker, t1) == good
