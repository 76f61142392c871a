"""dockerapi.filters: both JSON forms, validation, label/bool matchers, since/until forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

import errdefs
from dockerapi import filters


def test_parse_go_cli_map_form() -> None:
    got = filters.parse('{"label":{"a=b":true,"c":true},"dangling":{"true":true}}')
    assert got == {"label": ["a=b", "c"], "dangling": ["true"]}


def test_parse_docker_py_list_form() -> None:
    assert filters.parse('{"label":["a=b","a=b","c"],"name":["web"]}') == {
        "label": ["a=b", "c"], "name": ["web"]}


def test_parse_empty_and_false_entries() -> None:
    assert filters.parse(None) == {}
    assert filters.parse("") == {}
    assert filters.parse("{}") == {}
    assert filters.parse('{"label":{"a":false}}') == {"label": []}


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', '{"label":"a"}', '{"label":[1]}',
                                 '{"label":{"a":"yes"}}'])
def test_parse_malformed(raw: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"^invalid filter"):
        filters.parse(raw)


def test_validate() -> None:
    filters.validate({"label": ["x"], "dangling": ["1"]}, {"label", "dangling", "before"})
    with pytest.raises(errdefs.InvalidArgument) as info:
        filters.validate({"label": [], "bogus": ["x"]}, {"label"})
    assert str(info.value) == "invalid filter 'bogus'"


def test_get_bool() -> None:
    f = {"dangling": ["true"], "d0": ["0"], "d1": ["1"], "both": ["true", "false"],
         "junk": ["maybe"], "none": []}
    assert filters.get_bool(f, "dangling") is True
    assert filters.get_bool(f, "d0") is False
    assert filters.get_bool(f, "d1") is True
    assert filters.get_bool(f, "absent", True) is True
    assert filters.get_bool(f, "absent") is None
    with pytest.raises(errdefs.InvalidArgument) as info:
        filters.get_bool(f, "both")
    assert str(info.value) == "invalid filter 'both=false,true'"
    for name in ("junk", "none"):
        with pytest.raises(errdefs.InvalidArgument):
            filters.get_bool(f, name)


def test_match_labels() -> None:
    labels = {"com.example.a": "1", "env": "prod", "empty": ""}
    assert filters.match_labels([], labels)
    assert filters.match_labels([], None)
    assert filters.match_labels(["env"], labels)
    assert filters.match_labels(["env=prod", "com.example.a=1"], labels)
    assert filters.match_labels(["empty="], labels)
    assert not filters.match_labels(["env=dev"], labels)
    assert not filters.match_labels(["env", "missing"], labels)
    assert not filters.match_labels(["env"], None)
    assert filters.match_labels(["k=a=b"], {"k": "a=b"})


@pytest.mark.parametrize(
    ("text", "ns"),
    [("10m", 600 * 10**9), ("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000), ("300ms", 3 * 10**8),
     ("-2h", -7200 * 10**9), ("2us", 2000), ("0", 0)],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert filters.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "m", "1x", "1h 2m", "."])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        filters.parse_duration(text)


def test_timestamps() -> None:
    now = 1_700_000_000.0
    assert filters.parse_timestamp_ns("10m", now) == int(now * 10**9) - 600 * 10**9
    assert filters.parse_timestamp("1699999000", now) == 1699999000.0
    assert filters.parse_timestamp_ns("1699999000.5") == 1699999000_500_000_000
    assert filters.parse_timestamp_ns("1699999000.000000001") == 1699999000_000_000_001
    assert filters.parse_timestamp_ns("0") == 0
    assert filters.parse_timestamp("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert filters.parse_timestamp("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    assert filters.parse_timestamp_ns("2023-11-14T22:13:20.25Z") == 1_700_000_000_250_000_000
    assert filters.parse_timestamp("2023-11-14Z") == datetime(
        2023, 11, 14, tzinfo=UTC).timestamp()
    # No zone: the server's local time, as moby does.
    local = datetime(2023, 11, 14, 22, 13).astimezone().timestamp()
    assert filters.parse_timestamp("2023-11-14T22:13") == local
    assert abs(filters.parse_timestamp("1s") - (time.time() - 1)) < 5


@pytest.mark.parametrize("text", ["yesterday", "2023-13-45", "2023-11-14T25:00Z", "12abc"])
def test_timestamps_reject(text: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        filters.parse_timestamp(text)
