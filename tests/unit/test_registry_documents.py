"""Unit tests of the registry service's parsing: manifests, indexes, challenges, auth headers, transport."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import errdefs
from registry_svc.api import Platform, decode_registry_auth
from registry_svc.manifests import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    MAX_MANIFEST,
    OCI_INDEX,
    Index,
    Manifest,
    parse_document,
    pick_platform,
)
from registry_svc.session import parse_challenge
from registry_svc.transport import TransportConfig, normalize_server_address

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def manifest(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D1, "size": 10},
        "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": D2, "size": 20}],
    }
    doc.update(over)
    return doc


def test_manifest_parses() -> None:
    m = parse_document(json.dumps(manifest()).encode(), "")
    assert isinstance(m, Manifest)
    assert m.config.digest == D1 and m.layers[0].size == 20


def test_both_index_and_manifest_is_refused() -> None:
    raw = json.dumps(manifest(manifests=[])).encode()
    with pytest.raises(errdefs.InvalidArgument, match="both an index and a manifest"):
        parse_document(raw, "")


def test_unknown_media_types_are_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="unsupported manifest media type"):
        parse_document(json.dumps(manifest(mediaType="application/x-evil")).encode(), "")
    layers = [{"mediaType": "application/x-evil", "digest": D2, "size": 1}]
    with pytest.raises(errdefs.InvalidArgument, match="unsupported layer media type"):
        parse_document(json.dumps(manifest(layers=layers)).encode(), "")


def test_schema1_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="schema 1"):
        parse_document(json.dumps({"schemaVersion": 1, "fsLayers": []}).encode(), "")


@pytest.mark.parametrize("digest", ["sha256:../../x", "sha256:" + "A" * 64, "md5:abc", ""])
def test_hostile_digests_are_refused(digest: str) -> None:
    layers = [{"mediaType": DOCKER_LAYER_GZIP, "digest": digest, "size": 1}]
    with pytest.raises(errdefs.InvalidArgument):
        parse_document(json.dumps(manifest(layers=layers)).encode(), "")


def test_bad_sizes_are_refused() -> None:
    for size in (-1, "12", True, None):
        layers = [{"mediaType": DOCKER_LAYER_GZIP, "digest": D2, "size": size}]
        with pytest.raises(errdefs.InvalidArgument):
            parse_document(json.dumps(manifest(layers=layers)).encode(), "")


def test_oversized_manifest_is_refused() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="too big"):
        parse_document(b" " * (MAX_MANIFEST + 1), "")


def test_index_and_platform_pick() -> None:
    idx = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": D1, "size": 5,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": DOCKER_MANIFEST, "digest": D2, "size": 6,
             "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ],
    }
    doc = parse_document(json.dumps(idx).encode(), "")
    assert isinstance(doc, Index)
    assert pick_platform(doc, Platform("linux", "amd64")).digest == D1
    assert pick_platform(doc, Platform("linux", "arm", "v7")).digest == D2
    assert pick_platform(doc, Platform("linux", "arm")).digest == D2
    with pytest.raises(errdefs.NotFound, match="no matching manifest for linux/arm/v6"):
        pick_platform(doc, Platform("linux", "arm", "v6"))


def test_parse_challenge() -> None:
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                         'scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "reg",
                         "scope": "repository:a/b:pull,push"}
    basic = parse_challenge('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


def test_decode_registry_auth() -> None:
    doc = {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5000"}
    enc = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    a = decode_registry_auth(enc)
    assert (a.username, a.password, a.server_address) == ("u", "p", "127.0.0.1:5000")
    assert decode_registry_auth("e30=").empty
    assert decode_registry_auth(None).empty
    legacy = base64.b64encode(json.dumps({"auth": base64.b64encode(b"x:y:z").decode()}).encode())
    b = decode_registry_auth(legacy.decode())
    assert (b.username, b.password) == ("x", "y:z")
    with pytest.raises(errdefs.InvalidArgument):
        decode_registry_auth("!!!not base64!!!")


def test_insecure_registries() -> None:
    t = TransportConfig(insecure_registries=["10.1.0.0/16", "myreg:5000"])
    assert t.is_insecure("127.0.0.1:5000")
    assert t.is_insecure("localhost:5000")
    assert t.is_insecure("10.1.2.3")
    assert t.is_insecure("myreg:5000")
    assert not t.is_insecure("myreg:5001")
    assert not t.is_insecure("example.com")
    assert not t.is_insecure("10.2.0.1:443")


def test_endpoints_order(tmp_path: Path) -> None:
    t = TransportConfig(certs_dir=tmp_path, registry_mirrors=["http://127.0.0.1:5000"])
    eps = t.endpoints("docker.io")
    assert [e.url for e in eps] == ["http://127.0.0.1:5000", "https://registry-1.docker.io"]
    assert eps[0].mirror
    assert [e.url for e in t.endpoints("127.0.0.1:6000")] == ["https://127.0.0.1:6000",
                                                               "http://127.0.0.1:6000"]
    assert [e.url for e in t.endpoints("example.com")] == ["https://example.com"]


def test_server_address_normalisation() -> None:
    assert normalize_server_address("https://index.docker.io/v1/") == "docker.io"
    assert normalize_server_address("") == "docker.io"
    assert normalize_server_address("https://127.0.0.1:5000") == "127.0.0.1:5000"
    assert normalize_server_address("127.0.0.1:5000/") == "127.0.0.1:5000"


def test_credentials_for_another_registry_are_dropped() -> None:
    from registry_svc.api import AuthConfig
    from registry_svc.service import _for_host

    a = AuthConfig(username="u", password="p", server_address="https://127.0.0.1:5000")
    assert _for_host(a, "127.0.0.1:5000/x:1") == a
    assert _for_host(a, "127.0.0.1:6000/x:1").empty
    assert _for_host(a, "busybox").empty
    hub = AuthConfig(username="u", password="p", server_address="https://index.docker.io/v1/")
    assert _for_host(hub, "busybox") == hub
    assert _for_host(AuthConfig(username="u"), "127.0.0.1:7/x").username == "u"
