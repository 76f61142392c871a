"""Validate Engine API response bodies against the swagger 2.0 spec of one API version.

``load_spec("1.41").problems(body, "/containers/{id}/json")`` lists what is wrong with ``body`` as
the 200 response of ``GET /containers/{id}/json``: ``$ref`` into ``definitions`` is resolved,
``x-nullable`` allows null. Go marshals nil slices, maps and struct pointers as null, and dockerd
sends such nulls where the spec says array or object, so nulls there pass by default; scalars are
never null unless the spec marks them ``x-nullable`` or they are `GO_POINTERS`.

``strict=True`` adds what a client that reads dockerd's output relies on: fields a ``required``
list names are present and not null (a few that dockerd itself sends as null are exempt), and the
fields in `ALWAYS_SENT` (what dockerd sends in every response of that operation) are present and
not null. Unknown fields are not reported: dockerd sends some the spec lacks.

The spec files are ``docker-engine-v<version>.yaml`` in ``$BERTH_API_SPEC_DIR``, or in
``tests/data/api`` of the repository (1.41 and 1.50, copied from moby's published API docs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match

__all__ = [
    "ALWAYS_SENT",
    "GO_POINTERS",
    "NULL_OK",
    "UNSPECIFIED_OK",
    "ApiSpec",
    "ShapeError",
    "load_spec",
    "spec_dir",
]

_REPO = Path(__file__).resolve().parents[2]

# Dotted paths into the body: ``[]`` is every item of a list, ``*`` every value of a map.
ALWAYS_SENT: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("/containers/{id}/json", "get"): (
        "Id", "Created", "Path", "Image", "Name", "RestartCount", "Driver", "Platform",
        "ResolvConfPath", "HostnamePath", "HostsPath", "LogPath", "MountLabel", "ProcessLabel",
        "AppArmorProfile",
        "State", "State.Status", "State.Running", "State.Paused", "State.Restarting",
        "State.OOMKilled", "State.Dead", "State.Pid", "State.ExitCode", "State.Error",
        "State.StartedAt", "State.FinishedAt",
        "HostConfig", "HostConfig.NetworkMode", "HostConfig.RestartPolicy", "HostConfig.LogConfig",
        "GraphDriver", "GraphDriver.Name", "Mounts", "Mounts.[].Type", "Mounts.[].Destination",
        "Mounts.[].RW",
        "Config", "Config.Hostname", "Config.Image", "Config.Labels", "Config.Env",
        "NetworkSettings", "NetworkSettings.SandboxID", "NetworkSettings.SandboxKey",
        "NetworkSettings.Ports", "NetworkSettings.Networks",
        "NetworkSettings.Networks.*.NetworkID", "NetworkSettings.Networks.*.EndpointID",
        "NetworkSettings.Networks.*.Gateway", "NetworkSettings.Networks.*.IPAddress",
        "NetworkSettings.Networks.*.IPPrefixLen", "NetworkSettings.Networks.*.MacAddress",
    ),
    ("/containers/json", "get"): (
        "[].Id", "[].Names", "[].Image", "[].ImageID", "[].Command", "[].Created", "[].Ports",
        "[].Labels", "[].State", "[].Status", "[].HostConfig.NetworkMode",
        "[].NetworkSettings.Networks", "[].NetworkSettings.Networks.*.NetworkID", "[].Mounts",
    ),
    ("/images/{name}/json", "get"): (
        "Id", "RepoTags", "RepoDigests", "Created", "Size", "Config", "Architecture", "Os",
        "RootFS", "RootFS.Type", "RootFS.Layers", "GraphDriver", "GraphDriver.Name",
    ),
    ("/images/json", "get"): ("[].Id", "[].RepoTags", "[].RepoDigests", "[].Created", "[].Size"),
    ("/networks/{id}", "get"): (
        "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "IPAM.Driver",
        "IPAM.Config", "Internal", "Attachable", "Ingress", "ConfigFrom", "ConfigOnly",
        "Containers", "Containers.*.EndpointID", "Containers.*.MacAddress",
        "Containers.*.IPv4Address", "Options", "Labels",
    ),
    ("/networks", "get"): (
        "[].Name", "[].Id", "[].Created", "[].Scope", "[].Driver", "[].EnableIPv6", "[].IPAM",
        "[].IPAM.Driver", "[].Internal", "[].Attachable", "[].Ingress", "[].Options", "[].Labels",
    ),
    ("/volumes/{name}", "get"): ("Name", "Driver", "Mountpoint", "Scope", "CreatedAt"),
    ("/volumes", "get"): ("Volumes", "Volumes.[].Name", "Volumes.[].Driver", "Volumes.[].Mountpoint"),
    ("/info", "get"): (
        "ID", "Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images",
        "Driver", "DriverStatus", "MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota",
        "IPv4Forwarding", "Debug", "NFd", "NGoroutines", "SystemTime", "LoggingDriver",
        "CgroupDriver", "CgroupVersion", "KernelVersion", "OperatingSystem", "OSType",
        "Architecture", "NCPU", "MemTotal", "DockerRootDir", "Name", "ServerVersion", "Runtimes",
        "DefaultRuntime", "Swarm", "Swarm.LocalNodeState", "SecurityOptions", "Plugins",
        "Plugins.Volume", "Plugins.Network", "Plugins.Log", "RegistryConfig", "IndexServerAddress",
    ),
    ("/version", "get"): (
        "Version", "ApiVersion", "MinAPIVersion", "GitCommit", "GoVersion", "Os", "Arch",
        "KernelVersion", "Platform.Name", "Components", "Components.[].Name",
        "Components.[].Version",
    ),
    ("/system/df", "get"): (
        "LayersSize", "Images", "Containers", "Volumes", "Containers.[].Id",
        "Volumes.[].UsageData.Size", "Volumes.[].UsageData.RefCount",
    ),
    ("/events", "get"): ("Type", "Action", "Actor", "Actor.ID", "Actor.Attributes", "time", "timeNano"),
    ("/containers/{id}/stats", "get"): (
        "read", "preread", "id", "name", "cpu_stats", "cpu_stats.cpu_usage",
        "cpu_stats.cpu_usage.total_usage", "cpu_stats.online_cpus", "precpu_stats", "memory_stats",
        "pids_stats", "blkio_stats",
    ),
    ("/exec/{id}/json", "get"): (
        "ID", "Running", "ProcessConfig", "ProcessConfig.entrypoint", "ProcessConfig.arguments",
        "OpenStdin", "OpenStdout", "OpenStderr", "ContainerID", "Pid", "CanRemove",
    ),
}

# Scalars that are Go pointers in dockerd's types (null when unset) the spec forgot to mark
# x-nullable: ``definition.field`` (or the title of an inline schema).
GO_POINTERS: frozenset[str] = frozenset(
    {
        "Resources.MemorySwappiness",
        "Resources.OomKillDisable",
        "Resources.PidsLimit",
        "HostConfig.Init",
        "ExecInspectResponse.ExitCode",
    }
)

# Required by the spec, yet sent as null by dockerd itself (Go nil maps): ``definition.field``.
NULL_OK: frozenset[str] = frozenset(
    {
        "Volume.Labels",
        "Volume.Options",
        "GraphDriverData.Data",
        "DriverData.Data",
        "ImageSummary.Labels",
        "VolumeListResponse.Warnings",
    }
)

# Sent by dockerd although the spec does not name them: ``definition.field`` (or title).
UNSPECIFIED_OK: frozenset[str] = frozenset(
    {
        # the pre-1.22 event fields, still sent up to API 1.51
        "EventMessage.status",
        "EventMessage.id",
        "EventMessage.from",
    }
)

_REF = "#/definitions/"
_NULLABLE_TYPES = ("array", "object")
_NULL = {"type": "null"}


class ShapeError(AssertionError):
    """A response body does not match its schema; the message lists every problem."""


def spec_dir() -> Path:
    """Where the ``docker-engine-v*.yaml`` files are."""
    env = os.environ.get("BERTH_API_SPEC_DIR")
    if env:
        return Path(env)
    # The versions the tests check (1.41, 1.50) travel with the repository, so a bare clone tests.
    return _REPO / "tests" / "data" / "api"


@cache
def load_spec(version: str) -> ApiSpec:
    """The spec of API ``version`` ("1.41", "v1.50"), parsed once per process."""
    version = version.removeprefix("v")
    path = spec_dir() / f"docker-engine-v{version}.yaml"
    with path.open(encoding="utf-8") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(doc, dict) or doc.get("swagger") != "2.0":
        raise ValueError(f"{path}: not a swagger 2.0 document")
    return ApiSpec(version, doc)


def _is_nullable(node: Mapping[str, Any], go_nil: bool) -> bool:
    if node.get("x-nullable") is True:
        return True
    # x-nullable: false is not honoured for arrays and objects: dockerd sends nil maps there too
    if not go_nil:
        return False
    return "$ref" in node or node.get("type") in _NULLABLE_TYPES or "allOf" in node


def _convert(node: Any, go_nil: bool, owner: str | None = None, pointer: bool = False) -> Any:
    """A swagger schema node as a JSON Schema draft 4 node (x-nullable made explicit).

    ``owner`` names the definition (or titled inline schema) whose properties these are, for
    `GO_POINTERS`; ``pointer`` says the node is one of those.
    """
    if not isinstance(node, dict):
        return node
    owner = owner or node.get("title")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("example", "description", "title") or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {
                name: _convert(sub, go_nil, None, f"{owner}.{name}" in GO_POINTERS)
                for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value, go_nil) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub, go_nil, owner) for sub in value]
        elif key == "type" and value == "file":
            continue
        else:
            out[key] = value
    if pointer or _is_nullable(node, go_nil):
        return {"anyOf": [dict(_NULL), out]}
    return out


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    # image and registry names hold slashes (dockerd routes them as {name:.*})
    body = "".join(
        (".+" if p == "{name}" else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(f"^{body}$")


def _is_null_wrapper(err: ValidationError) -> bool:
    branches = err.validator_value
    return (
        err.validator == "anyOf"
        and isinstance(branches, list)
        and len(branches) == 2
        and branches[0] == _NULL
    )


def _leaves(err: ValidationError) -> Iterator[ValidationError]:
    """The errors inside x-nullable wrappers (which fail as "not valid under any of ...")."""
    if _is_null_wrapper(err):
        inner = [e for e in err.context or () if e.schema_path and e.schema_path[0] != 0]
        if inner:
            for sub in inner:
                yield from _leaves(sub)
            return
        # not even the null branch matched: report the value's type against the real schema
        yield best_match(err.context or [err])
        return
    if err.validator in ("anyOf", "oneOf") and err.context:
        yield from _leaves(best_match(err.context))
        return
    yield err


@dataclass
class ApiSpec:
    """One parsed swagger document and the validators made from it."""

    version: str
    doc: dict[str, Any]
    _validators: dict[tuple[str, str, int, bool], jsonschema.Draft4Validator] = field(
        default_factory=dict, repr=False
    )
    _definitions: dict[bool, dict[str, Any]] = field(default_factory=dict, repr=False)

    # -- schema lookup -------------------------------------------------------------------------

    def operation(self, url_path: str) -> str:
        """The path template (``/containers/{id}/json``) a concrete path matches.

        Raises:
            KeyError: no path of the spec matches.
        """
        url_path = re.sub(r"^/v\d+\.\d+(?=/)", "", url_path.split("?", 1)[0])
        paths: dict[str, Any] = self.doc["paths"]
        if url_path in paths:
            return url_path
        found = [t for t in paths if _template_regex(t).match(url_path)]
        if not found:
            raise KeyError(f"API {self.version}: no path matches {url_path}")
        # the most literal template wins: /images/{name}/json over /images/{name}
        return max(found, key=lambda t: len(re.sub(r"\{[^}]+\}", "", t)))

    def response_schema(self, path: str, method: str = "get", status: int = 200) -> dict[str, Any]:
        """The swagger schema (unconverted) of one response.

        Raises:
            KeyError: the spec has no such path, method, status or no schema for it.
        """
        try:
            responses = self.doc["paths"][path][method.lower()]["responses"]
        except KeyError:
            raise KeyError(f"API {self.version}: no operation {method.upper()} {path}") from None
        resp = responses.get(status, responses.get(str(status)))
        if resp is None or "schema" not in resp:
            raise KeyError(f"API {self.version}: {method.upper()} {path} has no {status} schema")
        schema: dict[str, Any] = resp["schema"]
        return schema

    def definition(self, name: str) -> dict[str, Any]:
        """One entry of ``definitions``."""
        found: dict[str, Any] = self.doc["definitions"][name]
        return found

    def _validator(
        self, path: str, method: str, status: int, go_nil: bool
    ) -> jsonschema.Draft4Validator:
        key = (path, method.lower(), status, go_nil)
        if key not in self._validators:
            if go_nil not in self._definitions:
                self._definitions[go_nil] = {
                    name: _convert(sub, go_nil, name) for name, sub in self.doc["definitions"].items()
                }
            schema = self.response_schema(path, method, status)
            root = dict(_convert(schema, go_nil))
            if schema.get("x-nullable") is not True and root.get("anyOf", [None])[0] == _NULL:
                root = dict(root["anyOf"][1])  # the body itself is never null
            root["definitions"] = self._definitions[go_nil]
            self._validators[key] = jsonschema.Draft4Validator(root)
        return self._validators[key]

    # -- validation ----------------------------------------------------------------------------

    def problems(
        self,
        body: Any,
        path: str,
        method: str = "get",
        status: int = 200,
        *,
        strict: bool = False,
        unknown: bool = False,
        go_nil: bool = True,
    ) -> list[str]:
        """Every way ``body`` differs from the response schema; empty when it matches.

        Args:
            path: a path template of the spec (`operation` maps a concrete path to one).
            strict: also report required and `ALWAYS_SENT` fields that are missing or null.
            unknown: with ``strict``, also report fields the schema of this version does not name
                (a field of a later version, a misspelling), except `UNSPECIFIED_OK`.
            go_nil: accept null where the spec says array, object or ``$ref`` (Go nil values).
        """
        validator = self._validator(path, method, status, go_nil)
        found = sorted(
            {f"{e.json_path}: {e.message}" for top in validator.iter_errors(body) for e in _leaves(top)}
        )
        if strict:
            schema = self.response_schema(path, method, status)
            extra = list(self._walk(body, schema, "$", unknown))
            for dotted in ALWAYS_SENT.get((path, method.lower()), ()):
                extra.extend(_missing(body, dotted.split("."), "$"))
            # one line per field: a type error or the first strict finding
            seen = {line.split(": ", 1)[0] for line in found}
            for line in extra:
                where = line.split(": ", 1)[0]
                if where not in seen:
                    seen.add(where)
                    found.append(line)
        return found

    def check(
        self,
        body: Any,
        path: str,
        method: str = "get",
        status: int = 200,
        *,
        strict: bool = True,
        unknown: bool = True,
        what: str = "",
    ) -> None:
        """Raise `ShapeError` listing every problem (strict, unknown fields too, by default)."""
        found = self.problems(body, path, method, status, strict=strict, unknown=unknown)
        if found:
            label = what or f"{method.upper()} {path} {status}"
            lines = "\n  ".join(found)
            raise ShapeError(f"API {self.version} {label}: {len(found)} problem(s):\n  {lines}")

    def _resolve(self, node: dict[str, Any], name: str | None) -> tuple[dict[str, Any], str | None]:
        seen = 0
        while True:
            if "$ref" in node and str(node["$ref"]).startswith(_REF):
                name = str(node["$ref"])[len(_REF) :]
                node = self.definition(name)
            elif len(node.get("allOf", ())) == 1 and isinstance(node["allOf"][0], dict):
                node = node["allOf"][0]
            else:
                return node, name
            seen += 1
            if seen > 32:
                raise ValueError(f"$ref loop at {name}")

    def _object(self, node: dict[str, Any], name: str | None) -> _Object:
        """Properties, required names and additionalProperties of a schema, allOf merged."""
        node, name = self._resolve(node, name)
        obj = _Object(
            name=name or node.get("title"),
            properties=dict(node.get("properties") or {}),
            required=list(node.get("required") or ()),
            additional=node.get("additionalProperties"),
            items=node.get("items"),
        )
        for part in node.get("allOf") or ():
            sub = self._object(part, None)
            obj.properties.update(sub.properties)
            obj.required.extend(sub.required)
            obj.owners.update(dict.fromkeys(sub.properties, sub.name))
        obj.owners.update({k: obj.name for k in node.get("properties") or {}})
        return obj

    def _walk(self, body: Any, node: dict[str, Any], where: str, unknown: bool) -> Iterator[str]:
        """Required fields present as null (not x-nullable, not in `NULL_OK`) and, with
        ``unknown``, fields the schema does not name (minus `UNSPECIFIED_OK`)."""
        if body is None:
            return
        obj = self._object(node, None)
        if isinstance(body, dict):
            for req in obj.required:
                sub = obj.properties.get(req) or {}
                owner = obj.owners.get(req, obj.name)
                if (
                    req in body
                    and body[req] is None
                    and sub.get("x-nullable") is not True
                    and f"{owner}.{req}" not in NULL_OK
                ):
                    yield f"{where}.{req}: null where Docker sends a value (required)"
            for key, value in body.items():
                if key in obj.properties and isinstance(obj.properties[key], dict):
                    yield from self._walk(value, obj.properties[key], f"{where}.{key}", unknown)
                elif isinstance(obj.additional, dict):
                    yield from self._walk(value, obj.additional, f"{where}.{key}", unknown)
                elif (
                    unknown
                    and obj.properties
                    and not obj.additional
                    and f"{obj.name}.{key}" not in UNSPECIFIED_OK
                ):
                    yield f"{where}.{key}: not in the API {self.version} schema"
        elif isinstance(body, list) and isinstance(obj.items, dict):
            for i, item in enumerate(body):
                yield from self._walk(item, obj.items, f"{where}[{i}]", unknown)


@dataclass
class _Object:
    name: str | None
    properties: dict[str, Any]
    required: list[str]
    additional: Any
    items: Any
    owners: dict[str, str | None] = field(default_factory=dict)


def _missing(body: Any, parts: list[str], where: str) -> Iterator[str]:
    """Report where a dotted `ALWAYS_SENT` path is missing or null in ``body``."""
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    if head == "[]":
        if isinstance(body, list):
            for i, item in enumerate(body):
                yield from _missing(item, rest, f"{where}[{i}]")
        return
    if not isinstance(body, dict):
        return  # a type error the schema check reports
    if head == "*":
        for key, value in body.items():
            yield from _missing(value, rest, f"{where}.{key}")
        return
    if head not in body:
        yield f"{where}.{head}: missing (Docker always sends it)"
    elif body[head] is None:
        yield f"{where}.{head}: null where Docker sends a value"
    else:
        yield from _missing(body[head], rest, f"{where}.{head}")
