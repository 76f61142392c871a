"""berthctl command line: `status`, `images ls`, `images inspect` over berth's gRPC API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import anyio
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import errdefs
import grpckit
from berthapi.containers.v1 import containers_pb2
from berthapi.events.v1 import events_pb2
from berthapi.images.v1 import images_pb2, images_pb2_grpc
from berthapi.networks.v1 import networks_pb2
from berthapi.registry.v1 import registry_pb2
from berthapi.system.v1 import system_pb2, system_pb2_grpc
from berthapi.volumes.v1 import volumes_pb2
from berthctl.format import (
    human_duration,
    human_size,
    parse_time,
    render_table,
    short_id,
    split_ref,
)

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_EXEC_ROOT", "SERVICES", "Targets", "amain", "main", "run"]

DEFAULT_EXEC_ROOT = "/run/berth"
#: The embedded daemon's gRPC socket.
DEFAULT_ADDRESS = f"unix://{DEFAULT_EXEC_ROOT}/berthd.sock"

#: Short service name -> full proto service name (also its gRPC health service name).
SERVICES: dict[str, str] = {
    "system": system_pb2.DESCRIPTOR.services_by_name["System"].full_name,
    "images": images_pb2.DESCRIPTOR.services_by_name["Images"].full_name,
    "containers": containers_pb2.DESCRIPTOR.services_by_name["Containers"].full_name,
    "networks": networks_pb2.DESCRIPTOR.services_by_name["Networks"].full_name,
    "volumes": volumes_pb2.DESCRIPTOR.services_by_name["Volumes"].full_name,
    "registry": registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
    "events": events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
}


class Targets:
    """Where each service answers, and one lazily opened channel per distinct address.

    With an explicit address every service is there. Otherwise ``<exec_root>/berthd.sock``
    (embedded mode) when it exists, else ``<exec_root>/<service>.sock`` (split mode); in split
    mode System is asked at ``system.sock`` or, failing that, at the first service socket present.
    """

    def __init__(self, address: str | None, exec_root: str) -> None:
        self.addresses: dict[str, str] = {}
        embedded = os.path.join(exec_root, "berthd.sock")
        split = {n: os.path.join(exec_root, n + ".sock") for n in SERVICES}
        present = [n for n, path in split.items() if os.path.exists(path)]
        if address is None and not os.path.exists(embedded) and present:
            self.addresses = {n: f"unix://{path}" for n, path in split.items()}
            if "system" not in present:
                self.addresses["system"] = self.addresses[present[0]]
        else:
            # Nothing found at all: name the embedded socket, the default, in the error.
            self.addresses = dict.fromkeys(SERVICES, address or f"unix://{embedded}")
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, service: str) -> grpc.aio.Channel:
        """Return the channel for a service (short name), opening it on first use."""
        address = self.addresses[service]
        if address not in self._channels:
            self._channels[address] = grpckit.open_channel(address)
        return self._channels[address]

    async def aclose(self) -> None:
        """Close every channel opened."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="berthctl", description="Talk to berth over gRPC.")
    p.add_argument("--address", help="daemon address (unix:///path or host:port); "
                   f"default $BERTH_ADDRESS or {DEFAULT_ADDRESS}")
    p.add_argument("--exec-root", default=None,
                   help="find <dir>/berthd.sock or else <dir>/<service>.sock "
                   f"(default {DEFAULT_EXEC_ROOT})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="health of every service, version and data root")
    images = sub.add_parser("images", help="list or inspect images")
    isub = images.add_subparsers(dest="images_command", required=True)
    ls = isub.add_parser("ls", aliases=["list"], help="list images (like docker images)")
    ls.add_argument("-a", "--all", action="store_true", help="show intermediate images too")
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    inspect = isub.add_parser("inspect", help="image details as JSON")
    inspect.add_argument("refs", nargs="+", metavar="REF")
    return p


def _targets(args: argparse.Namespace) -> Targets:
    address: str | None = args.address or os.environ.get("BERTH_ADDRESS") or None
    return Targets(address, args.exec_root or DEFAULT_EXEC_ROOT)


async def _status(targets: Targets, args: argparse.Namespace, out: TextIO) -> int:
    timeout: float = args.timeout
    rows: list[list[str]] = []
    healthy = True
    for name, full in SERVICES.items():
        stub = grpckit.stub(health_pb2_grpc.HealthStub, targets.channel(name))
        try:
            resp = await grpckit.unary(stub.Check(
                health_pb2.HealthCheckRequest(service=full), timeout=timeout))
            state = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        except errdefs.NotFound:
            state = "NOT_REGISTERED"  # the process answers but does not run this service
        except errdefs.Unavailable:
            state = "UNREACHABLE"
        except errdefs.DeadlineExceeded:
            state = "TIMEOUT"
        # A service this build or process does not run yet is reported, not counted as a fault.
        healthy = healthy and state in ("SERVING", "NOT_REGISTERED")
        rows.append([name, state, targets.addresses[name]])

    system = grpckit.stub(system_pb2_grpc.SystemStub, targets.channel("system"))
    try:
        version = await grpckit.unary(system.Version(system_pb2.VersionRequest(),
                                                     timeout=timeout))
        info = await grpckit.unary(system.Info(system_pb2.InfoRequest(), timeout=timeout))
    except errdefs.Unavailable:
        if all(r[1] == "UNREACHABLE" for r in rows):
            raise  # nothing answers at all: report the daemon as unreachable
        out.write("Version:      unknown (System service unreachable)\n")
    else:
        out.write(f"Version:      {version.version} (API {version.api_version}, "
                  f"minimum {version.min_api_version})\n")
        out.write(f"Data root:    {info.data_root}\n")
        out.write(f"Exec root:    {info.exec_root}\n")
        if info.mode:
            out.write(f"Mode:         {info.mode}\n")
        if info.node_id:
            out.write(f"Node:         {info.node_id}\n")
    out.write("\n")
    out.write(render_table(["SERVICE", "STATUS", "ADDRESS"], rows))
    return 0 if healthy else 1


def _image_rows(images: Sequence[Any], now: datetime) -> list[dict[str, Any]]:
    """One row per repo tag (or one <none> row), newest image first, as docker images shows."""
    rows: list[dict[str, Any]] = []

    def created_key(img: Any) -> float:
        ts = parse_time(img.created)
        return ts.timestamp() if ts else 0.0

    for img in sorted(images, key=created_key, reverse=True):
        created = parse_time(img.created)
        since = human_duration((now - created).total_seconds()) + " ago" if created else "N/A"
        digest = img.repo_digests[0].split("@", 1)[1] if img.repo_digests else "<none>"
        refs = [split_ref(t) for t in img.repo_tags] or [("<none>", "<none>")]
        for repo, tag in refs:
            rows.append({
                "Containers": "N/A" if img.containers < 0 else str(img.containers),
                "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S %z %Z") if created else "",
                "CreatedSince": since,
                "Digest": digest,
                "ID": short_id(img.id),
                "Repository": repo,
                "Size": human_size(img.size),
                "Tag": tag or "<none>",
            })
    return rows


async def _images_ls(targets: Targets, args: argparse.Namespace, out: TextIO) -> int:
    stub = grpckit.stub(images_pb2_grpc.ImagesStub, targets.channel("images"))
    resp = await grpckit.unary(stub.ListImages(images_pb2.ListImagesRequest(all=args.all),
                                               timeout=args.timeout))
    rows = _image_rows(list(resp.images), datetime.now(UTC))
    if args.quiet:
        seen: list[str] = []
        for row in rows:
            if row["ID"] not in seen:
                seen.append(row["ID"])
        out.write("".join(i + "\n" for i in seen))
    elif args.format == "json":
        out.write("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    else:
        out.write(render_table(
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            [[r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]] for r in rows]))
    return 0


def _inspect_json(img: Any) -> dict[str, Any]:
    """Docker's image inspect shape, from the record and its stored config."""
    try:
        config: dict[str, Any] = json.loads(img.config_json) if img.config_json else {}
    except ValueError:
        config = {}
    doc: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": list(img.repo_digests),
        "Parent": img.parent,
        "Comment": config.get("comment", ""),
        "Created": img.created,
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config", {}),
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Size": img.size,
        "RootFS": config.get("rootfs", {"Type": "layers"}),
    }
    if config.get("variant"):
        doc["Variant"] = config["variant"]
    if img.HasField("manifest") and img.manifest.digest:
        doc["Descriptor"] = {"mediaType": img.manifest.media_type,
                             "digest": img.manifest.digest, "size": img.manifest.size}
    return doc


async def _images_inspect(targets: Targets, args: argparse.Namespace, out: TextIO,
                          err: TextIO) -> int:
    stub = grpckit.stub(images_pb2_grpc.ImagesStub, targets.channel("images"))
    docs: list[dict[str, Any]] = []
    rc = 0
    for ref in args.refs:
        try:
            resp = await grpckit.unary(stub.GetImage(images_pb2.GetImageRequest(ref=ref),
                                                     timeout=args.timeout))
        except errdefs.NotFound as exc:
            err.write(f"Error: {exc.message}\n")  # like docker: report, go on with the rest
            rc = 1
            continue
        docs.append(_inspect_json(resp.image))
    out.write(json.dumps(docs, indent=4) + "\n")
    return rc


async def amain(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run berthctl with ``argv`` (without the program name) and return the exit code.

    Error handling:
        Errors from berth print as ``Error: <message>`` and give exit code 1; an unreachable
        daemon prints where berthctl looked.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed usage
        return int(exc.code or 0)
    targets = await anyio.to_thread.run_sync(_targets, args)  # stats the exec root
    try:
        if args.command == "status":
            return await _status(targets, args, out)
        if args.images_command in ("ls", "list"):
            return await _images_ls(targets, args, out)
        return await _images_inspect(targets, args, out, err)
    except errdefs.Unavailable as exc:
        where = ", ".join(sorted(set(targets.addresses.values())))
        err.write(f"Error: cannot connect to berth at {where}: is berthd running? ({exc})\n")
        return 1
    except errdefs.EngineError as exc:
        err.write(f"Error: {exc.message}\n")
        return 1
    finally:
        with anyio.CancelScope(shield=True):
            await targets.aclose()


def run(argv: Sequence[str]) -> int:
    """Synchronous entry: run ``amain`` on a fresh event loop."""

    async def _go() -> int:
        return await amain(argv)

    return anyio.run(_go, backend="asyncio")


def main() -> None:
    """Console-script entry point (``berthctl``)."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
