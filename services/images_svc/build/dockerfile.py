"""Dockerfile parser: parser directives, line continuations, comments, flags and JSON/shell forms."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import errdefs

__all__ = [
    "INSTRUCTIONS",
    "Dockerfile",
    "Instruction",
    "Stage",
    "parse_dockerfile",
    "parse_json_array",
    "split_stages",
]

INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})
# Flags each instruction accepts (the classic builder's set; BuildKit-only ones are refused).
_FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir"}),
}
_NO_FLAGS = frozenset({"HEALTHCHECK", "ONBUILD"})  # their text keeps its own flags
_DIRECTIVE_RE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_WORD_RE = re.compile(r"(\S+)\s*(.*)\Z", re.S)
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})


@dataclass(frozen=True, slots=True)
class Instruction:
    """One instruction, continuations joined."""

    cmd: str  # upper case: "RUN"
    rest: str  # the arguments' raw text after the flags
    flags: dict[str, str]  # "--from=x" -> {"from": "x"}; a bare "--link" -> {"link": ""}
    original: str  # the instruction as written (continuations joined), for "Step n/m : ..."
    line: int  # 1-based line of its first line

    def json_args(self) -> list[str] | None:
        """The JSON array form of the arguments, or None for the shell form."""
        return parse_json_array(self.rest)


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed Dockerfile."""

    instructions: list[Instruction]
    escape: str = "\\"
    syntax: str = ""


@dataclass(slots=True)
class Stage:
    """One FROM and the instructions up to the next FROM."""

    index: int
    from_: Instruction
    commands: list[Instruction] = field(default_factory=list)


def parse_error(line: int, msg: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"dockerfile parse error on line {line}: {msg}")


def parse_json_array(rest: str) -> list[str] | None:
    """``["a", "b"]`` -> ["a", "b"]; anything that is not a JSON array of strings -> None."""
    text = rest.strip()
    if not text.startswith("["):
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """Read parser directives from the top; returns them and the index of the first other line."""
    found: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE_RE.match(lines[i].strip()) if lines[i].lstrip().startswith("#") else None
        if m is None:
            break
        key = m.group(1).lower()
        if key not in _KNOWN_DIRECTIVES:
            break  # an unknown directive is a comment, and ends the directives
        if key in found:
            raise parse_error(i + 1, f"only one {key} parser directive can be used")
        found[key] = m.group(2)
        i += 1
    return found, i


def _extract_flags(instr: str, args: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = args
    while True:
        rest = rest.lstrip()
        if not rest.startswith("--"):
            break
        word, after = _first_word(rest)
        if word == "--":
            rest = after
            break
        name, eq, value = word[2:].partition("=")
        allowed = _FLAGS.get(instr, frozenset())
        if name not in allowed:
            if instr == "RUN" and name in ("mount", "network", "security"):
                raise parse_error(line, f"the --{name} option requires BuildKit. "
                                  "Refer to https://docs.docker.com/go/buildkit/ to learn how "
                                  "to build images with BuildKit enabled")
            raise parse_error(line, f"unknown flag: {name}")
        flags[name] = value if eq else ""
        rest = after
    return flags, rest.strip()


def parse_dockerfile(text: str | bytes) -> Dockerfile:
    """Parse a Dockerfile.

    Raises:
        errdefs.InvalidArgument: unknown instructions, bad directives or flags, or a file
            without instructions; the message names the line.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise errdefs.InvalidArgument(f"the Dockerfile is not valid UTF-8: {e}") from None
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    directives, i = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise errdefs.InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
    out: list[Instruction] = []
    n = len(lines)
    while i < n:
        raw = lines[i]
        start = i
        i += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        logical = raw.lstrip()
        cont = _continues(logical, escape)
        if cont:
            logical = _trim_continuation(logical, escape)
        while cont and i < n:
            nxt = lines[i]
            i += 1
            if nxt.strip().startswith("#") or not nxt.strip():
                continue  # comments and empty lines inside a continuation are dropped
            cont = _continues(nxt, escape)
            logical += _trim_continuation(nxt, escape) if cont else nxt
        logical = logical.strip()
        word, args = _first_word(logical)
        cmd = word.upper()
        if cmd not in INSTRUCTIONS:
            raise parse_error(start + 1, f"unknown instruction: {word}")
        if cmd in _NO_FLAGS:
            flags, rest = {}, args.strip()
        else:
            flags, rest = _extract_flags(cmd, args, start + 1)
        out.append(Instruction(cmd, rest, flags, logical, start + 1))
    if not out:
        raise errdefs.InvalidArgument("the Dockerfile cannot be empty")
    return Dockerfile(out, escape, directives.get("syntax", ""))


def _first_word(s: str) -> tuple[str, str]:
    m = _WORD_RE.match(s)
    return (m.group(1), m.group(2)) if m else ("", "")


def _continues(line: str, escape: str) -> bool:
    s = line.rstrip(" \t")
    return s.endswith(escape)


def _trim_continuation(line: str, escape: str) -> str:
    return line.rstrip(" \t")[:-1]


def split_stages(df: Dockerfile) -> tuple[list[Instruction], list[Stage]]:
    """Split into the ARGs before the first FROM and the stages.

    Raises:
        errdefs.InvalidArgument: an instruction other than ARG before the first FROM, or no FROM.
    """
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in df.instructions:
        if ins.cmd == "FROM":
            stages.append(Stage(len(stages), ins))
        elif not stages:
            if ins.cmd != "ARG":
                raise parse_error(ins.line, "no build stage in current context")
            meta.append(ins)
        else:
            stages[-1].commands.append(ins)
    if not stages:
        raise errdefs.InvalidArgument("no build stage in current context")
    return meta, stages
