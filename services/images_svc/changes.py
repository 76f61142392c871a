"""Dockerfile-style ``--change`` instructions (docker import -c / commit -c) applied to a config."""

from __future__ import annotations

import copy
import json
import posixpath
import re
from typing import Any

import errdefs

__all__ = ["VALID_CHANGE_COMMANDS", "apply_changes", "split_words"]

VALID_CHANGE_COMMANDS = frozenset(
    {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL",
     "USER", "VOLUME", "WORKDIR"}
)
_ONBUILD_FORBIDDEN = frozenset({"ONBUILD", "FROM", "MAINTAINER"})
_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9}


def _unterminated(kind: str, s: str) -> str:
    return f"unexpected end of statement while looking for matching {kind}-quote in {s!r}"


def split_words(s: str) -> list[str]:
    """Split on unquoted whitespace, removing quotes and backslash escapes (Dockerfile rules)."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if c == "\\" and i + 1 < n:
            cur.append(s[i + 1])
            i += 2
        elif c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                raise errdefs.InvalidArgument(_unterminated("single", s))
            cur.append(s[i + 1 : j])
            i = j + 1
        elif c == '"':
            i += 1
            while i < n and s[i] != '"':
                if s[i] == "\\" and i + 1 < n and s[i + 1] in '"\\$':
                    i += 1
                cur.append(s[i])
                i += 1
            if i >= n:
                raise errdefs.InvalidArgument(_unterminated("double", s))
            i += 1
        else:
            cur.append(c)
            i += 1
    if in_word:
        words.append("".join(cur))
    return words


def _json_or_shell(instr: str, rest: str) -> list[str]:
    if rest.startswith("["):
        try:
            v = json.loads(rest)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    # Not a JSON array of strings: shell form, as Docker does.
    return ["/bin/sh", "-c", rest]


def _pairs(instr: str, rest: str) -> list[tuple[str, str]]:
    words = split_words(rest)
    if not words:
        raise errdefs.InvalidArgument(f"{instr} requires at least one argument")
    if "=" not in words[0]:
        # Legacy "ENV KEY value with spaces": the rest of the line is the value.
        parts = rest.strip().split(None, 1)
        if len(parts) < 2:
            raise errdefs.InvalidArgument(f"{instr} must have two arguments")
        return [(split_words(parts[0])[0], " ".join(split_words(parts[1])) if instr == "LABEL"
                 else parts[1].strip())]
    out: list[tuple[str, str]] = []
    for w in words:
        if "=" not in w:
            raise errdefs.InvalidArgument(
                f"Syntax error - can't find = in {w!r}. Must be of the form: name=value"
            )
        k, v = w.split("=", 1)
        if not k:
            raise errdefs.InvalidArgument(f"{instr} names can not be blank")
        out.append((k, v))
    return out


def _ports(rest: str) -> list[str]:
    out: list[str] = []
    for w in split_words(rest):
        m = _PORT_RE.match(w)
        if not m:
            raise errdefs.InvalidArgument(f"invalid containerPort: {w}")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        proto = (m.group(3) or "tcp").lower()
        if hi < lo or hi > 65535:
            raise errdefs.InvalidArgument(f"invalid containerPort: {w}")
        out.extend(f"{p}/{proto}" for p in range(lo, hi + 1))
    return out


def _duration(flag: str, s: str) -> int:
    pos, total = 0, 0
    if s == "0":
        return 0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
        pos = m.end()
    if pos != len(s) or not s:
        raise errdefs.InvalidArgument(f'time: invalid duration "{s}" for flag --{flag}')
    return total


def _healthcheck(rest: str) -> dict[str, Any]:
    words = rest.split()
    if [w.upper() for w in words] == ["NONE"]:
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    keys = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
            "start-interval": "StartInterval"}
    body = rest.strip()
    while body.startswith("--"):
        flag, _, body = body.partition(" ")
        body = body.lstrip()
        name, _, value = flag[2:].partition("=")
        if name in keys:
            hc[keys[name]] = _duration(name, value)
        elif name == "retries":
            if not value.isdigit():
                raise errdefs.InvalidArgument(f'invalid argument "{value}" for --retries')
            hc["Retries"] = int(value)
        else:
            raise errdefs.InvalidArgument(f"Unknown flag: {name}")
    typ, _, cmd = body.partition(" ")
    if typ.upper() != "CMD":
        raise errdefs.InvalidArgument(
            f'Unknown type "{typ.upper()}" in HEALTHCHECK (try CMD)'
        )
    cmd = cmd.strip()
    if not cmd:
        raise errdefs.InvalidArgument("Missing command after HEALTHCHECK CMD")
    argv = _json_or_shell("HEALTHCHECK", cmd)
    hc["Test"] = ["CMD", *argv] if argv[:2] != ["/bin/sh", "-c"] or cmd.startswith("[") else [
        "CMD-SHELL", cmd]
    return hc


def _set_env(cfg: dict[str, Any], key: str, value: str) -> None:
    env = [e for e in (cfg.get("Env") or []) if e.split("=", 1)[0] != key]
    env.append(f"{key}={value}")
    cfg["Env"] = env


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Return a copy of the container-config object ``config`` with ``changes`` applied.

    Each change is one Dockerfile instruction (several may be newline-separated).

    Raises:
        errdefs.InvalidArgument: for an instruction Docker does not allow here
            (``<INSTR> is not a valid change command``) or malformed arguments.
    """
    cfg = copy.deepcopy(config)
    cmd_set = False
    lines = [ln.strip() for ch in changes for ln in ch.splitlines()]
    for line in lines:
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        instr = word.upper()
        rest = rest.strip()
        if instr not in VALID_CHANGE_COMMANDS:
            raise errdefs.InvalidArgument(f"{instr} is not a valid change command")
        if not rest:
            raise errdefs.InvalidArgument(f"{instr} requires at least one argument")
        if instr == "CMD":
            cfg["Cmd"] = _json_or_shell(instr, rest)
            cmd_set = True
        elif instr == "ENTRYPOINT":
            cfg["Entrypoint"] = _json_or_shell(instr, rest)
            if not cmd_set:
                cfg["Cmd"] = None  # a new entrypoint drops the old default args
        elif instr == "ENV":
            for k, v in _pairs(instr, rest):
                _set_env(cfg, k, v)
        elif instr == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            labels.update(_pairs(instr, rest))
            cfg["Labels"] = labels
        elif instr == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            ports.update({p: {} for p in _ports(rest)})
            cfg["ExposedPorts"] = ports
        elif instr == "ONBUILD":
            trigger = rest.split(None, 1)[0].upper()
            if trigger in _ONBUILD_FORBIDDEN:
                raise errdefs.InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), rest]
        elif instr == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        elif instr == "USER":
            cfg["User"] = rest
        elif instr == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            paths = _json_or_shell(instr, rest) if rest.startswith("[") else split_words(rest)
            if paths[:2] == ["/bin/sh", "-c"] and rest.startswith("["):
                paths = split_words(rest)
            for p in paths:
                if not p.strip():
                    raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
                vols[p] = {}
            cfg["Volumes"] = vols
        elif instr == "WORKDIR":
            wd = split_words(rest)[0] if rest else ""
            cfg["WorkingDir"] = posixpath.normpath(
                posixpath.join("/", cfg.get("WorkingDir") or "/", wd)
            )
        elif instr == "HEALTHCHECK":
            cfg["Healthcheck"] = _healthcheck(rest)
    return cfg
