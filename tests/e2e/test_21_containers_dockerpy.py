"""Containers through docker-py 7.1: run, detach, logs, wait, attach socket, remove."""

from __future__ import annotations

import uuid
from typing import Any

import docker.errors
import pytest

from testkit.berthd import BerthdProcess


def test_run_returns_output(dockerpy: Any, busybox_image: str) -> None:
    out = dockerpy.containers.run("busybox", ["sh", "-c", "echo hi; echo err >&2"], remove=True)
    assert out == b"hi\n"


def test_run_nonzero_raises_container_error(dockerpy: Any, busybox_image: str) -> None:
    with pytest.raises(docker.errors.ContainerError) as err:
        dockerpy.containers.run("busybox", ["sh", "-c", "exit 4"], remove=True)
    assert err.value.exit_status == 4


def test_detach_logs_wait_remove(dockerpy: Any, busybox_image: str) -> None:
    name = f"py{uuid.uuid4().hex[:8]}"
    c = dockerpy.containers.run("busybox", ["sh", "-c", "echo one; sleep 0.3; echo two"],
                                detach=True, name=name, labels={"k": "v"})
    try:
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert c.logs() == b"one\ntwo\n"
        assert c.logs(stdout=True, stderr=False, tail=1) == b"two\n"
        c.reload()
        assert c.status == "exited" and c.labels == {"k": "v"}
        assert [x.name for x in dockerpy.containers.list(all=True, filters={"label": "k=v"})] == [name]
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        dockerpy.containers.get(name)


def test_stream_logs_follow(dockerpy: Any, busybox_image: str) -> None:
    c = dockerpy.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.1; done"],
                                detach=True)
    try:
        lines = list(c.logs(stream=True, follow=True))
        assert b"".join(lines) == b"1\n2\n3\n"
    finally:
        c.remove(force=True)


def test_pinned_1_41_inspect_and_list(berthd: BerthdProcess, busybox_image: str) -> None:
    client = berthd.api_client(version="1.41")
    try:
        c = client.containers.create("busybox", "true")
        try:
            attrs = client.api.inspect_container(c.id)
            assert attrs["HostConfig"]["LogConfig"]["Config"] == {}
            assert attrs["State"]["Status"] == "created"
            assert c.id in [x.id for x in client.containers.list(all=True)]
        finally:
            c.remove()
    finally:
        client.close()
