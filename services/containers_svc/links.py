"""Legacy --link on the default bridge: link specs and the environment dockerd injects for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["link_env", "parse_link", "split_link_name"]


def parse_link(spec: str) -> tuple[str, str]:
    """``name[:alias]`` (or dockerd's stored ``/name:/parent/alias``) -> (child name, alias)."""
    name, _, alias = spec.partition(":")
    name = name.strip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    return name, alias


def split_link_name(ref: str) -> tuple[str, str]:
    """``parent/alias`` (a link's registered name, leading ``/`` optional) -> (parent, alias).

    The parent is empty for a container's own name (``/name``).
    """
    parent, _, alias = ("/" + ref.lstrip("/")).rpartition("/")
    return parent.strip("/"), alias


def _sorted_ports(exposed: Iterable[str]) -> list[tuple[int, str]]:
    ports: list[tuple[int, str]] = []
    for key in exposed:
        number, _, proto = key.partition("/")
        try:
            ports.append((int(number), (proto or "tcp").lower()))
        except ValueError:
            continue
    # Ascending by number; for the same number tcp comes first (moby's nat.Sort order).
    return sorted(ports, key=lambda p: (p[0], p[1] != "tcp", p[1]))


def _next_contiguous(ports: list[tuple[int, str]], value: int, index: int) -> int:
    if index + 1 == len(ports):
        return index
    for i in range(index + 1, len(ports)):
        if ports[i][0] > value + 1:
            return i - 1
        value += 1
    return len(ports) - 1


def link_env(name: str, child_ip: str, child_env: Iterable[str], exposed: Mapping[str, Any]) -> list[str]:
    """moby's Link.ToEnv: ``<ALIAS>_PORT*``, ``<ALIAS>_NAME`` and ``<ALIAS>_ENV_*`` variables.

    ``name`` is the link's full name, ``/parent/alias``.
    """
    alias = name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = _sorted_ports(exposed)
    env: list[str] = []
    if ports:
        number, proto = ports[0]
        env.append(f"{alias}_PORT={proto}://{child_ip}:{number}")
    i = 0
    while i < len(ports):
        number, proto = ports[i]
        j = _next_contiguous(ports, number, i)
        if j > i + 1:
            head = f"{alias}_PORT_{number}_{proto.upper()}"
            env += [f"{head}_START={proto}://{child_ip}:{number}", f"{head}_ADDR={child_ip}",
                    f"{head}_PROTO={proto}", f"{head}_PORT_START={number}"]  # fmt: skip
            end_number, end_proto = ports[j]
            tail = f"{alias}_PORT_{number}_{end_proto.upper()}"
            env += [f"{tail}_END={end_proto}://{child_ip}:{end_number}", f"{tail}_PORT_END={end_number}"]
            i = j + 1
            continue
        i += 1
    for number, proto in ports:
        head = f"{alias}_PORT_{number}_{proto.upper()}"
        env += [f"{head}={proto}://{child_ip}:{number}", f"{head}_ADDR={child_ip}",
                f"{head}_PORT={number}", f"{head}_PROTO={proto}"]  # fmt: skip
    env.append(f"{alias}_NAME={name}")
    for entry in child_env:
        key, sep, value = entry.partition("=")
        # As dockerd: build-time HOME and PATH say nothing about the linked container.
        if not sep or key in ("HOME", "PATH"):
            continue
        env.append(f"{alias}_ENV_{key}={value}")
    return env
