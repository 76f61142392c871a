"""Inspect and ps JSON checked against the Engine API 1.50 swagger; docker-py against the routes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import pytest

from containers_svc.api import ContainerRecord, ContainerState
from gateway_svc import container_shapes as shapes

from .conftest import ServeFn
from .containers_fake import IMAGE_ID, FakeContainers, make_router

# The spec copy that travels with the repository (tests/data/api).
SWAGGER = Path(__file__).resolve().parents[2] / "data" / "api" / "docker-engine-v1.50.yaml"

# --- a YAML subset reader: enough for the swagger "definitions" block ----------------------

_KEY = re.compile(r'^(?P<key>"[^"]*"|[^\s:#][^:]*?):(?:\s+(?P<value>.*))?$')


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return text[1:-1]
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError:
            if text.startswith("[") and text.endswith("]"):  # [Name, Data]
                return [_scalar(t) for t in text[1:-1].split(",") if t.strip()]
            return text
    try:
        return int(text)
    except ValueError:
        return text


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = [ln.rstrip() for ln in lines]
        self.i = 0

    def skip_blank(self) -> None:
        while self.i < len(self.lines) and (not self.lines[self.i].strip()
                                            or self.lines[self.i].lstrip().startswith("#")):
            self.i += 1

    def peek_indent(self) -> int:
        self.skip_blank()
        if self.i >= len(self.lines):
            return -1
        ln = self.lines[self.i]
        return len(ln) - len(ln.lstrip())

    def skip_deeper(self, indent: int) -> None:
        while self.i < len(self.lines):
            ln = self.lines[self.i]
            if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
                return
            self.i += 1


def _depth(text: str) -> int:
    return text.count("{") + text.count("[") - text.count("}") - text.count("]")


def _parse_block(src: _Lines, indent: int) -> Any:
    if src.peek_indent() == indent and src.lines[src.i].lstrip().startswith("- "):
        return _parse_list(src, indent)
    out: dict[str, Any] = {}
    while src.peek_indent() == indent:
        line = src.lines[src.i].strip()
        m = _KEY.match(line)
        if m is None or line.startswith("- "):
            if not out:  # a value on the following line(s), e.g. "example:\n  [[1]]"
                src.skip_deeper(indent - 1)
                return _scalar(line)
            break
        src.i += 1
        key, value = m.group("key").strip('"'), m.group("value")
        if value is None or value == "":
            nxt = src.peek_indent()
            if nxt > indent or (nxt == indent and src.lines[src.i].lstrip().startswith("- ")):
                out[key] = _parse_block(src, nxt)
            else:
                out[key] = None
        elif value[:1] in ("|", ">"):
            src.skip_deeper(indent)
            out[key] = "<text>"
        elif value[:1] in ("{", "[") and _depth(value) > 0:
            depth = _depth(value)  # a flow collection spread over lines
            while depth > 0 and src.i < len(src.lines):
                depth += _depth(src.lines[src.i])
                src.i += 1
            out[key] = "<flow>"
        else:
            if value.startswith('"') and not (len(value) > 1 and value.endswith('"')):
                while src.i < len(src.lines) and not src.lines[src.i].rstrip().endswith('"'):
                    src.i += 1
                src.i += 1
                out[key] = "<text>"
            else:
                src.skip_deeper(indent)  # plain scalars continued on deeper lines
                out[key] = _scalar(value)
    return out


def _parse_list(src: _Lines, indent: int) -> list[Any]:
    out: list[Any] = []
    while src.peek_indent() == indent and src.lines[src.i].lstrip().startswith("- "):
        line = src.lines[src.i]
        item = line.lstrip()[2:]
        if _KEY.match(item.strip()) and not item.strip().startswith(('"', "'")):
            src.lines[src.i] = " " * (indent + 2) + item  # "- k: v" opens a mapping
            out.append(_parse_block(src, indent + 2))
        else:
            src.i += 1
            src.skip_deeper(indent)
            out.append(_scalar(item))
    return out


@cache
def definitions() -> dict[str, Any]:
    lines = SWAGGER.read_text().splitlines()
    start = lines.index("definitions:") + 1
    end = next(i for i in range(start, len(lines)) if lines[i] and not lines[i][0].isspace())
    doc = _parse_block(_Lines(lines[start:end]), 2)
    assert isinstance(doc, dict)
    return doc


# --- a small validator: types, enums, unknown keys, nullability -----------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "object": (dict,), "array": (list,),
}


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = definitions()[schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema:
        merged: dict[str, Any] = {"type": "object", "properties": {}}
        for part in schema["allOf"]:
            part = _resolve(part)
            merged["properties"].update(part.get("properties") or {})
        return merged
    return schema


# Go pointer fields the swagger does not mark x-nullable; dockerd sends null for them.
_GO_POINTERS = {"MemorySwappiness", "OomKillDisable", "PidsLimit", "Init"}


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    schema = _resolve(schema)
    kind = schema.get("type")
    if value is None:
        # Go marshals nil slices/maps/pointers as null; scalars are only null when nullable.
        nullable = schema.get("x-nullable") or path.rsplit(".", 1)[-1] in _GO_POINTERS
        if kind in ("string", "integer", "boolean", "number") and not nullable:
            return [f"{path}: null for {kind}"]
        return []
    errors: list[str] = []
    if kind in _TYPES and (not isinstance(value, _TYPES[kind])
                           or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{path}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if k in props:
                errors += validate(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                errors += validate(v, extra, f"{path}.{k}")
            elif props:
                errors.append(f"{path}: unknown key {k}")
        for k in schema.get("required") or []:
            if k not in value:
                errors.append(f"{path}: missing {k}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += validate(v, schema["items"], f"{path}[{i}]")
    return errors


def missing(value: dict[str, Any], name: str, optional: set[str]) -> set[str]:
    props = set(_resolve({"$ref": f"#/definitions/{name}"})["properties"])
    return props - set(value) - optional


def test_yaml_reader_finds_the_definitions() -> None:
    defs = definitions()
    state = defs["ContainerState"]["properties"]
    assert state["Status"]["enum"] == ["created", "running", "paused", "restarting", "removing",
                                       "exited", "dead"]
    assert defs["ContainerInspectResponse"]["properties"]["State"] == {"$ref": "#/definitions/ContainerState"}
    hc = _resolve({"$ref": "#/definitions/HostConfig"})["properties"]
    assert "Memory" in hc and "LogConfig" in hc  # allOf: Resources + own fields
    assert validate({"Status": "bogus", "Pid": "x"}, {"$ref": "#/definitions/ContainerState"}) == [
        "$.Status: 'bogus' not in ['created', 'running', 'paused', 'restarting', 'removing', "
        "'exited', 'dead']", "$.Pid: str is not integer"]


def record(**kw: Any) -> ContainerRecord:
    cid = "c0" * 32
    base: dict[str, Any] = dict(
        id=cid, name="/web", created="2026-01-01T00:00:00.123456789Z", path="sh", args=["-c", "exit 0"],
        config={"Image": "busybox", "Cmd": ["sh", "-c", "exit 0"], "Hostname": cid[:12],
                "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin"], "Healthcheck": {"Test": ["NONE"]}},
        host_config={"NetworkMode": "bridge",
                     "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]},
                     "LogConfig": {"Type": "json-file", "Config": None}, "Binds": ["/a:/b"]},
        networking_config={}, image="busybox", image_id=IMAGE_ID,
        state=ContainerState("running", True, pid=7, started_at="2026-01-01T00:00:01Z",
                             health={"Status": "healthy", "FailingStreak": 0, "Log": []}),
        mounts=[{"Type": "bind", "Source": "/a", "Destination": "/b", "Mode": "", "RW": True,
                 "Propagation": "rprivate"}],
        graph_driver={"MergedDir": "/m", "UpperDir": "/u", "WorkDir": "/w", "LowerDir": "/l"},
        size_rw=1, size_root_fs=2,
    )
    base.update(kw)
    return ContainerRecord(**base)


@pytest.mark.parametrize("version", ["1.41", "1.44", "1.50"])
@pytest.mark.parametrize("mode", ["bridge", "none", "mynet"])
def test_inspect_matches_swagger(version: str, mode: str) -> None:
    rec = record(host_config={"NetworkMode": mode})
    doc = shapes.container_inspect(rec, version)
    assert validate(doc, {"$ref": "#/definitions/ContainerInspectResponse"}) == []
    assert missing(doc, "ContainerInspectResponse", {"ImageManifestDescriptor"}) == set()
    assert missing(doc["State"], "ContainerState", set()) == set()
    assert missing(doc["NetworkSettings"], "NetworkSettings", set()) == set()
    ep = doc["NetworkSettings"]["Networks"][mode]
    gated = set() if version == "1.50" else {"GwPriority", *(() if version == "1.44" else ("DNSNames",))}
    assert missing(ep, "EndpointSettings", gated) == set()
    assert doc["GraphDriver"]["Data"]["UpperDir"] == "/u" and doc["HostConfig"]["LogConfig"]["Config"] == {}
    # every HostConfig key dockerd sends is there (these are omitempty in moby)
    assert missing(doc["HostConfig"], "HostConfig", {
        "Annotations", "KernelMemoryTCP", "Mounts", "Init", "Sysctls", "StorageOpt", "Tmpfs",
    }) == set()


def test_ps_entry_matches_swagger() -> None:
    doc = shapes.container_summary(record(), "1.50")
    assert validate(doc, {"$ref": "#/definitions/ContainerSummary"}) == []
    assert missing(doc, "ContainerSummary", {"ImageManifestDescriptor"}) == set()
    assert doc["Status"].endswith("(healthy)") and doc["Command"] == "sh -c 'exit 0'"
    assert doc["Created"] == 1767225600


# --- docker-py against the routes ---------------------------------------------------------

@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(serving: ServeFn) -> AsyncIterator[tuple[Path, FakeContainers]]:
    fake = FakeContainers()
    async with serving(make_router(fake)) as path:
        yield path, fake


@pytest.mark.anyio
async def test_docker_py_containers_run(api: tuple[Path, FakeContainers]) -> None:
    import docker
    import docker.errors

    path, fake = api

    def scenario() -> list[Any]:
        client = docker.DockerClient(base_url=f"unix://{path}", version="1.41", timeout=10)
        try:
            out = client.containers.run("busybox", ["echo", "hello", "world"], name="pyrun")
            ctr = client.containers.get("pyrun")
            listed = [c.name for c in client.containers.list(all=True, filters={"name": "pyrun"})]
            try:
                client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
                failed: Any = None
            except docker.errors.ContainerError as exc:
                failed = (exc.exit_status, exc.stderr)
            try:
                client.containers.get("nope")
                missing_err = ""
            except docker.errors.NotFound as exc:
                missing_err = str(exc.explanation)
            ctr.remove()
            return [out, ctr.status, ctr.attrs["State"]["ExitCode"], listed, failed, missing_err]
        finally:
            client.close()

    with anyio.fail_after(30):
        out, status, code, listed, failed, missing_err = await anyio.to_thread.run_sync(scenario)
    assert out == b"hello world\n"
    assert (status, code) == ("exited", 0)
    assert listed == ["pyrun"]
    assert failed == (3, b"bye\n")
    assert missing_err == "No such container: nope"
    assert fake.recs == {}  # the failed run was removed (remove=True) and pyrun by ctr.remove()
