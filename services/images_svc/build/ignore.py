""".dockerignore patterns with moby's patternmatcher rules: ``*``, ``?``, ``[..]``, ``**``, ``!``."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

import errdefs

__all__ = ["Pattern", "PatternMatcher", "read_dockerignore"]


def read_dockerignore(text: str | bytes) -> list[str]:
    """Patterns of a .dockerignore file: comments and blanks dropped, each cleaned.

    A leading "/" is dropped (patterns are relative to the context root); "!" marks an
    exception; whitespace around a pattern is ignored.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "."
        out.append(("!" if invert else "") + line)
    return out


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled pattern."""

    text: str
    exclusion: bool
    dirs: tuple[str, ...]
    matcher: Callable[[str], bool]

    def match(self, path: str) -> bool:
        return self.matcher(path)


_SPECIAL = frozenset("*?[\\")


def _bad(pattern: str) -> errdefs.InvalidArgument:
    return errdefs.InvalidArgument(f"syntax error in pattern: {pattern!r}")


def _class_char(p: str, i: int) -> tuple[str, int]:
    """One (possibly escaped) character of a [...] class, with Go's filepath.Match rules."""
    if i >= len(p) or p[i] in "-]":
        raise _bad(p)
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise _bad(p)
    if i + 1 >= len(p):
        raise _bad(p)  # the class is never closed
    return p[i], i + 1


def _class(p: str, i: int) -> tuple[str, int]:
    """Translate the class starting at p[i] == "["; returns the regex and the index after it."""
    i += 1
    neg = ""
    if i < len(p) and p[i] == "^":
        neg, i = "^", i + 1
    items: list[str] = []
    while True:
        if i < len(p) and p[i] == "]" and items:
            return "[" + neg + "".join(items) + "]", i + 1
        lo, i = _class_char(p, i)
        hi = lo
        if p[i] == "-":
            hi, i = _class_char(p, i + 1)
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")


def _compile(pattern: str) -> Callable[[str], bool]:
    """A matcher for one cleaned pattern: moby's regexp translation plus its suffix/prefix forms.

    Raises:
        errdefs.InvalidArgument: a pattern filepath.Match would call malformed.
    """
    if pattern.startswith("**") and not _SPECIAL & set(pattern[2:].lstrip("/") or ""):
        suffix = pattern[2:]  # "**file", "**/dir": a plain suffix
        return lambda path: path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
    if pattern.endswith("/**") and not _SPECIAL & set(pattern[:-3]):
        prefix = pattern[:-2]  # "dir/**": everything below dir
        return lambda path: path.startswith(prefix)
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**"
                out.append(".*" if i >= n else "(.*/)?")  # any number of dirs, even none
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= n:
                raise _bad(pattern)
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            rx, i = _class(pattern, i)
            out.append(rx)
            continue
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    try:
        rx = re.compile("".join(out), re.S)
    except re.error as e:
        raise errdefs.InvalidArgument(f"syntax error in pattern {pattern!r}: {e}") from None
    return lambda path: rx.match(path) is not None


class PatternMatcher:
    """Docker's pattern matcher over slash-separated paths relative to the context root."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise errdefs.InvalidArgument("illegal exclusion pattern: \"!\"")
            p = posixpath.normpath(p)
            self.patterns.append(Pattern(p, exclusion, tuple(p.split("/")), _compile(p)))

    @property
    def exclusions(self) -> bool:
        """Whether any pattern is an exception ("!..."): excluded dirs must still be walked."""
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` is ignored: the last pattern that matches it or a parent decides."""
        path = path.lstrip("/")
        parent = posixpath.dirname(path)
        parent_dirs = parent.split("/") if parent else []
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # cannot change the outcome
            hit = pat.match(path)
            if not hit and parent:
                # A pattern that matches a parent directory matches everything below it
                # (moby's MatchesOrParentMatches, which the CLI's context walk uses).
                hit = any(pat.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))
            if hit:
                matched = not pat.exclusion
        return matched
