"""dockerapi.reference: distribution/reference grammar and Docker Hub normalisation."""

from __future__ import annotations

import pytest

import errdefs
from dockerapi.reference import (
    is_full_id,
    looks_like_id_prefix,
    parse_reference,
    validate_tag,
)

HEX = "a" * 64


@pytest.mark.parametrize("s,domain,path,tag,digest", [
    ("busybox", "docker.io", "library/busybox", "", ""),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", ""),
    ("user/app", "docker.io", "user/app", "", ""),
    ("docker.io/library/debian:bookworm", "docker.io", "library/debian", "bookworm", ""),
    ("index.docker.io/library/debian", "docker.io", "library/debian", "", ""),
    ("localhost/x", "localhost", "x", "", ""),
    ("localhost:5000/x:t", "localhost:5000", "x", "t", ""),
    ("example.com/a/b", "example.com", "a/b", "", ""),
    ("127.0.0.1:5000/a__b/c-d.e", "127.0.0.1:5000", "a__b/c-d.e", "", ""),
    (f"busybox@sha256:{HEX}", "docker.io", "library/busybox", "", f"sha256:{HEX}"),
    (f"busybox:latest@sha256:{HEX}", "docker.io", "library/busybox", "latest", f"sha256:{HEX}"),
])
def test_parse(s: str, domain: str, path: str, tag: str, digest: str) -> None:
    r = parse_reference(s)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)


def test_names() -> None:
    r = parse_reference("busybox")
    assert r.name == "docker.io/library/busybox"
    assert r.familiar_name() == "busybox"
    assert r.with_default_tag().string() == "docker.io/library/busybox:latest"
    assert r.with_default_tag().familiar_string() == "busybox:latest"
    assert parse_reference("user/app:v1").familiar_string() == "user/app:v1"
    assert parse_reference("example.com/a/b:v").familiar_string() == "example.com/a/b:v"
    assert parse_reference("docker.io/library/a/b").familiar_name() == "library/a/b"
    d = parse_reference(f"busybox@sha256:{HEX}")
    assert d.with_default_tag() == d
    assert d.familiar_string() == f"busybox@sha256:{HEX}"


def test_uppercase() -> None:
    with pytest.raises(errdefs.InvalidArgument) as ei:
        parse_reference("UPPER")
    assert str(ei.value) == (
        "invalid reference format: repository name (library/UPPER) must be lowercase"
    )


@pytest.mark.parametrize("s", ["a::b", "", ":tag", "busybox:", "a/", "-a", "a@sha256:xyz",
                               "a b", "busybox:" + "t" * 129, "a//b"])
def test_invalid_format(s: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=r"^invalid reference format$"):
        parse_reference(s)


def test_tag_length() -> None:
    assert parse_reference("busybox:" + "t" * 128).tag == "t" * 128
    assert validate_tag("v1.0_rc-1") == "v1.0_rc-1"
    for bad in ("t" * 129, ".x", "-x", "a:b", ""):
        with pytest.raises(errdefs.InvalidArgument, match="invalid tag format"):
            validate_tag(bad)


def test_hex_name_rejected() -> None:
    with pytest.raises(errdefs.InvalidArgument,
                       match=r"invalid repository name \(a{64}\), cannot specify 64-byte"):
        parse_reference(HEX)


def test_name_too_long() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="must not be more than 255"):
        parse_reference("a/" * 130 + "b")


def test_ids() -> None:
    assert is_full_id(HEX) and is_full_id("sha256:" + HEX)
    assert not is_full_id(HEX[:12]) and not is_full_id("A" * 64)
    assert looks_like_id_prefix("abc123") and looks_like_id_prefix("sha256:abc")
    assert not looks_like_id_prefix("busybox") and not looks_like_id_prefix("g")
