"""The committed generated code matches the protos, and the API protos document every field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
# Protos whose every field, rpc and service must carry a comment (STYLE.md "Naming").
DOCUMENTED = [
    "types", "system", "images", "containers", "networks", "volumes", "registry", "events",
]


def test_generated_code_matches_protos() -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "check-protos.sh")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_generated_packages_import() -> None:
    code = "; ".join(f"import berthapi.{svc}.v1.{svc}_pb2_grpc"
                     for svc in DOCUMENTED)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "libs", capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("desc") / "set.pb"
    files = [f"berthapi/{svc}/v1/{svc}.proto" for svc in DOCUMENTED]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "protos"),
                    "--include_source_info", f"--descriptor_set_out={out}", *files],
                   check=True, timeout=120)
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _undocumented(fd: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Names of fields, rpcs and services without a comment of their own or of their group.

    A field directly under a commented field (no blank line) shares that field's comment.
    """
    locs = {tuple(loc.path): loc for loc in fd.source_code_info.location}
    missing: list[str] = []

    def commented(path: tuple[int, ...]) -> bool:
        loc = locs.get(path)
        return bool(loc and loc.leading_comments.strip())

    for si, svc in enumerate(fd.service):
        # The scope may be stated on the service or, for the file's one service, on the package.
        if not (commented((6, si)) or (len(fd.service) == 1 and commented((2,)))):
            missing.append(svc.name)
        missing += [f"{svc.name}.{m.name}" for mi, m in enumerate(svc.method)
                    if not commented((6, si, 2, mi))]
    for mi, msg in enumerate(fd.message_type):
        covered = False
        prev_end = -2
        for fi, field in enumerate(msg.field):
            loc = locs[(4, mi, 2, fi)]
            if commented((4, mi, 2, fi)):
                covered = True
            elif not (covered and loc.span[0] == prev_end + 1):
                covered = False
                missing.append(f"{msg.name}.{field.name}")
            prev_end = loc.span[2] if len(loc.span) == 4 else loc.span[0]
    return missing


@pytest.mark.parametrize("svc", DOCUMENTED)
def test_every_field_is_documented(descriptors: descriptor_pb2.FileDescriptorSet,
                                   svc: str) -> None:
    [fd] = [f for f in descriptors.file if f.name == f"berthapi/{svc}/v1/{svc}.proto"]
    assert fd.package == f"berthapi.{svc}.v1"
    assert _undocumented(fd) == []


@pytest.mark.parametrize("svc", DOCUMENTED)
def test_request_response_naming(descriptors: descriptor_pb2.FileDescriptorSet,
                                 svc: str) -> None:
    [fd] = [f for f in descriptors.file if f.name == f"berthapi/{svc}/v1/{svc}.proto"]
    for service in fd.service:
        for m in service.method:
            assert m.input_type == f".{fd.package}.{m.name}Request", m.name
            if not m.output_type.startswith(".google.protobuf.") and not m.server_streaming:
                assert m.output_type == f".{fd.package}.{m.name}Response", m.name
