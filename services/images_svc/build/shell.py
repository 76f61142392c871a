"""Docker's word expansion for Dockerfiles ($VAR, ${VAR}, ${VAR:-x}, ${VAR:+x}, quotes, escapes)."""

from __future__ import annotations

from collections.abc import Mapping

import errdefs

__all__ = ["expand_word", "expand_words"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class _Lexer:
    """One pass over a word, as moby's shell lexer (processStopOn) does it."""

    def __init__(self, word: str, env: Mapping[str, str], escape: str) -> None:
        self.s = word
        self.i = 0
        self.env = env
        self.esc = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    def process(self, stop: str = "", split: bool = False) -> tuple[str, list[str]]:
        """Expand up to ``stop`` (or the end); with ``split``, also cut unquoted whitespace."""
        out: list[str] = []
        words: list[str] = []
        in_word = False
        while self.i < len(self.s):
            c = self.peek()
            if stop and c == stop:
                self.i += 1
                break
            if split and c in " \t\r\n":
                self.i += 1
                if in_word:
                    words.append("".join(out))
                    out, in_word = [], False
                continue
            in_word = True
            if c == "'":
                self.i += 1
                out.append(self._single())
            elif c == '"':
                self.i += 1
                out.append(self._double())
            elif c == "$":
                val = self._dollar()
                if split and val:
                    # An unquoted expansion is split on whitespace like any text.
                    parts = val.split()
                    if val[0].isspace() and out:
                        words.append("".join(out))
                        out = []
                    for p in parts[:-1]:
                        out.append(p)
                        words.append("".join(out))
                        out = []
                    if parts:
                        out.append(parts[-1])
                    if val[-1].isspace():
                        words.append("".join(out))
                        out, in_word = [], False
                else:
                    out.append(val)
            elif c == self.esc:
                self.i += 1
                if self.i >= len(self.s):
                    out.append(c)  # a lone trailing escape stays
                else:
                    out.append(self.next())
            else:
                out.append(c)
                self.i += 1
        if in_word or out:
            words.append("".join(out))
        return "".join(out), words

    def _single(self) -> str:
        j = self.s.find("'", self.i)
        if j < 0:
            raise errdefs.InvalidArgument(
                "unexpected end of statement while looking for matching single-quote"
            )
        v = self.s[self.i:j]
        self.i = j + 1
        return v

    def _double(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise errdefs.InvalidArgument(
                    "unexpected end of statement while looking for matching double-quote"
                )
            c = self.peek()
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "$":
                out.append(self._dollar())
                continue
            self.i += 1
            if c == self.esc and self.peek() in ('"', "$", self.esc) and self.peek():
                c = self.next()
            out.append(c)

    def _name(self) -> str:
        start = self.i
        if self.peek().isdigit():
            self.i += 1  # a positional parameter: one digit, never set in a Dockerfile
            return self.s[start:self.i]
        while self.i < len(self.s) and self.s[self.i] in _NAME_CHARS:
            self.i += 1
        return self.s[start:self.i]

    def _dollar(self) -> str:
        self.i += 1  # the "$"
        c = self.peek()
        if c == "{":
            self.i += 1
            return self._braced()
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _braced(self) -> str:
        name = self._name()
        if not name:
            raise errdefs.InvalidArgument(f"bad substitution: missing variable name in {self.s!r}")
        c = self.next()
        if c == "}":
            return self.env.get(name, "")
        colon = False
        if c == ":":
            colon = True
            c = self.next()
        if c in ("-", "+", "?"):
            word, _ = _Lexer(self.s, self.env, self.esc)._sub(self, "}")
            isset = name in self.env
            val = self.env.get(name, "")
            present = isset and (val != "" or not colon)
            if c == "-":
                return val if present else word
            if c == "+":
                return word if present else ""
            if not present:
                raise errdefs.InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
            return val
        raise errdefs.InvalidArgument(f"unsupported modifier ({c}) in substitution: {self.s!r}")

    def _sub(self, outer: _Lexer, stop: str) -> tuple[str, int]:
        """Expand the modifier word of ``outer`` up to ``stop``, advancing ``outer``."""
        self.i = outer.i
        out: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise errdefs.InvalidArgument(f"missing '}}' in {self.s!r}")
            c = self.peek()
            if c == stop:
                self.i += 1
                break
            if c == "'":
                self.i += 1
                out.append(self._single())
            elif c == '"':
                self.i += 1
                out.append(self._double())
            elif c == "$":
                out.append(self._dollar())
            elif c == self.esc and self.i + 1 < len(self.s):
                self.i += 1
                out.append(self.next())
            else:
                out.append(c)
                self.i += 1
        outer.i = self.i
        return "".join(out), self.i


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``word`` as Docker's ProcessWord: variables substituted, quotes and escapes removed.

    Raises:
        errdefs.InvalidArgument: unterminated quotes, bad ``${...}`` syntax, ``${X:?msg}`` unset.
    """
    return _Lexer(word, env, escape).process()[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand ``text`` as Docker's ProcessWords: like expand_word, then split on unquoted spaces."""
    return _Lexer(text, env, escape).process(split=True)[1]
