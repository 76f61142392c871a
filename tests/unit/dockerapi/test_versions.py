"""dockerapi.versions: parsing and comparison as moby's versions package does."""

from __future__ import annotations

import pytest

import errdefs
from dockerapi import versions


def test_range_constants() -> None:
    assert (versions.MIN_API, versions.MAX_API) == ("1.24", "1.50")


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ("1.41", "1.41", 0),
        ("1.9", "1.10", -1),  # numeric, not lexical
        ("1.50", "1.5", 1),
        ("1.4", "1.4.0", 0),
        ("2.0", "1.99", 1),
        ("1.", "1.0", 0),
    ],
)
def test_compare(a: str, b: str, want: int) -> None:
    assert versions.compare(a, b) == want
    assert versions.compare(b, a) == -want


def test_at_least_and_in_range() -> None:
    assert versions.at_least("1.42", "1.42")
    assert versions.at_least("1.50", "1.42")
    assert not versions.at_least("1.41", "1.42")
    assert versions.in_range("1.24") and versions.in_range("1.50")
    assert not versions.in_range("1.23") and not versions.in_range("1.51")


@pytest.mark.parametrize("bad", ["1.x", "v1.41", "1.41-rc", " 1.4"])
def test_parse_version_rejects(bad: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        versions.parse_version(bad)


def test_parse_version() -> None:
    assert versions.parse_version("1.41") == (1, 41)
    assert versions.parse_version("1") == (1,)
