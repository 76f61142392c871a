"""Dockerfile parsing (directives, continuations, flags, stages) and Docker's word expansion."""

from __future__ import annotations

import pytest

import errdefs
from images_svc.build.dockerfile import parse_dockerfile, split_stages
from images_svc.build.shell import expand_word, expand_words

ENV = {"A": "a", "EMPTY": "", "SPACED": "x  y", "PATH": "/bin"}


@pytest.mark.parametrize(
    ("word", "want"),
    [
        ("$A", "a"), ("${A}", "a"), ("${A}b", "ab"), ("$Ab", ""), ("pre-$A.post", "pre-a.post"),
        ("${A:-d}", "a"), ("${NOPE:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
        ("${NOPE-d}", "d"), ("${A:+alt}", "alt"), ("${NOPE:+alt}", ""), ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"), ("${NOPE:-${A}x}", "ax"), ("'$A'", "$A"), ('"$A"', "a"),
        ('"${A} b"', "a b"), ("\\$A", "$A"), ("a\\ b", "a b"), ('"a\\"b"', 'a"b'),
        ('"\\x"', "\\x"), ("$", "$"), ("a$", "a$"), ("$1x", "x"), ("${PATH}:/usr/bin", "/bin:/usr/bin"),
        ("", ""), ("'it''s'", "its"),
    ],
)
def test_expand_word(word: str, want: str) -> None:
    assert expand_word(word, ENV) == want


def test_expand_backtick_escape() -> None:
    assert expand_word("`$A", ENV, escape="`") == "$A"
    assert expand_word("C:\\dir", ENV, escape="`") == "C:\\dir"


def test_expand_words_splits_unquoted() -> None:
    assert expand_words("$SPACED 'q r' s", ENV) == ["x", "y", "q r", "s"]
    assert expand_words('"$SPACED"', ENV) == ["x  y"]


@pytest.mark.parametrize("bad", ["'open", '"open', "${", "${A", "${:-x}", "${NOPE?}", "${NOPE:?must be set}"])
def test_expand_errors(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        expand_word(bad, ENV)


def test_parse_directives_continuations_comments() -> None:
    df = parse_dockerfile(
        "# syntax=docker/dockerfile:1\n"
        "# escape=`\n"
        "\n"
        "FROM busybox AS base\n"
        "# a comment\n"
        "RUN echo one `\n"
        "    # comment inside a continuation\n"
        "\n"
        "    two\n"
        "  copy --from=base --chown=1:2 a b\n"
        'CMD ["sh", "-c", "echo hi"]\n'
    )
    assert df.escape == "`" and df.syntax == "docker/dockerfile:1"
    cmds = [(i.cmd, i.line) for i in df.instructions]
    assert cmds == [("FROM", 4), ("RUN", 6), ("COPY", 10), ("CMD", 11)]
    run = df.instructions[1]
    assert run.rest == "echo one     two" and run.original.startswith("RUN echo one")
    cp = df.instructions[2]
    assert cp.flags == {"from": "base", "chown": "1:2"} and cp.rest == "a b"
    assert df.instructions[3].json_args() == ["sh", "-c", "echo hi"]
    assert df.instructions[1].json_args() is None


def test_directive_only_at_top() -> None:
    df = parse_dockerfile("FROM busybox\n# escape=`\nRUN echo a \\\n b\n")
    assert df.escape == "\\" and df.instructions[1].rest == "echo a  b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM busybox\nNOPE x\n", "dockerfile parse error on line 2: unknown instruction: NOPE"),
        ("# escape=x\nFROM a\n", "invalid escape token"),
        ("# escape=`\n# escape=\\\nFROM a\n", "only one escape parser directive"),
        ("", "cannot be empty"),
        ("# only a comment\n", "cannot be empty"),
        ("FROM a\nCOPY --bogus=1 a b\n", "line 2: unknown flag: bogus"),
        ("FROM a\nRUN --mount=type=cache,target=/x true\n", "requires BuildKit"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument) as ei:
        parse_dockerfile(text)
    assert message in ei.value.message


def test_stages() -> None:
    meta, stages = split_stages(parse_dockerfile(
        "ARG V=1\nFROM a AS one\nRUN x\nFROM one\nCOPY --from=one /a /b\n"))
    assert [m.rest for m in meta] == ["V=1"]
    assert [len(s.commands) for s in stages] == [1, 1]
    with pytest.raises(errdefs.InvalidArgument, match="no build stage"):
        split_stages(parse_dockerfile("RUN x\nFROM a\n"))
