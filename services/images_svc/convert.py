"""Pure conversions between the images service's records and its protobuf messages."""

from __future__ import annotations

import json

from berthapi.images.v1 import images_pb2 as pb
from berthapi.types.v1 import types_pb2 as tpb
from grpckit.types import filters_from_proto, filters_to_proto
from images_svc.api import (
    BuildEvent,
    BuildOptions,
    CommitOptions,
    ImportOptions,
    ProgressEvent,
    PruneReport,
)
from images_svc.model import (
    Change,
    ChangeKind,
    DeleteItem,
    HistoryItem,
    ImageRecord,
    Snapshot,
)

__all__ = [
    "build_event_from_proto", "build_event_to_proto", "build_options_from_proto",
    "build_options_to_proto", "changes_from_proto", "changes_to_proto", "commit_from_proto",
    "commit_to_proto", "delete_items_from_proto", "delete_items_to_proto", "filters_from_proto",
    "filters_to_proto", "history_from_proto", "history_to_proto", "image_from_proto",
    "image_to_proto", "import_options_from_proto", "import_options_to_proto", "progress_from_proto",
    "progress_to_proto", "prune_from_proto", "prune_to_proto", "snapshot_from_proto",
    "snapshot_to_proto",
]


def image_to_proto(rec: ImageRecord) -> pb.Image:
    return pb.Image(
        id=rec.id,
        repo_tags=rec.repo_tags,
        repo_digests=rec.repo_digests,
        parent=rec.parent,
        created=rec.created,
        size=rec.size,
        config_json=rec.config_json,
        manifest=tpb.Descriptor(media_type=rec.manifest_media_type, digest=rec.manifest_digest,
                                size=rec.manifest_size),
        chain_ids=rec.chain_ids,
        node_id=rec.node_id,
        record_created=rec.record_created,
        containers=-1,
        layers=[tpb.Descriptor(media_type=m, digest=d, size=s) for m, d, s in rec.layers],
    )


def image_from_proto(msg: pb.Image) -> ImageRecord:
    return ImageRecord(
        id=msg.id,
        config_json=msg.config_json,
        manifest_digest=msg.manifest.digest,
        manifest_media_type=msg.manifest.media_type,
        manifest_size=msg.manifest.size,
        chain_ids=list(msg.chain_ids),
        parent=msg.parent,
        created=msg.created,
        size=msg.size,
        node_id=msg.node_id,
        record_created=msg.record_created,
        repo_tags=list(msg.repo_tags),
        repo_digests=list(msg.repo_digests),
        layers=[(d.media_type, d.digest, d.size) for d in msg.layers],
    )



def import_options_to_proto(opts: ImportOptions) -> pb.ImportOptions:
    return pb.ImportOptions(
        repo=opts.repo, tag=opts.tag, changes=opts.changes, message=opts.message,
        platform=tpb.Platform(os=opts.platform_os, architecture=opts.platform_arch,
                              variant=opts.platform_variant),
    )


def import_options_from_proto(msg: pb.ImportOptions) -> ImportOptions:
    return ImportOptions(
        repo=msg.repo, tag=msg.tag, changes=list(msg.changes), message=msg.message,
        platform_os=msg.platform.os, platform_arch=msg.platform.architecture,
        platform_variant=msg.platform.variant,
    )


def progress_to_proto(ev: ProgressEvent) -> tpb.Progress:
    return tpb.Progress(id=ev.id, status=ev.status, stream=ev.stream, current=ev.current,
                        total=ev.total, aux_json=ev.aux_json)


def progress_from_proto(msg: tpb.Progress) -> ProgressEvent:
    return ProgressEvent(id=msg.id, status=msg.status, stream=msg.stream, current=msg.current,
                         total=msg.total, aux_json=msg.aux_json)


def delete_items_to_proto(items: list[DeleteItem]) -> list[pb.DeleteItem]:
    return [pb.DeleteItem(untagged=i.untagged, deleted=i.deleted) for i in items]


def delete_items_from_proto(msgs: list[pb.DeleteItem]) -> list[DeleteItem]:
    return [DeleteItem(untagged=m.untagged, deleted=m.deleted) for m in msgs]


def history_to_proto(items: list[HistoryItem]) -> list[pb.HistoryItem]:
    return [pb.HistoryItem(id=h.id, created=h.created, created_by=h.created_by, tags=h.tags,
                           size=h.size, comment=h.comment) for h in items]


def history_from_proto(msgs: list[pb.HistoryItem]) -> list[HistoryItem]:
    return [HistoryItem(m.id, m.created, m.created_by, list(m.tags), m.size, m.comment)
            for m in msgs]


def prune_to_proto(rep: PruneReport) -> pb.PruneImagesResponse:
    return pb.PruneImagesResponse(deleted=delete_items_to_proto(rep.deleted),
                                  space_reclaimed=rep.space_reclaimed)


def prune_from_proto(msg: pb.PruneImagesResponse) -> PruneReport:
    return PruneReport(deleted=delete_items_from_proto(list(msg.deleted)),
                       space_reclaimed=msg.space_reclaimed)


def snapshot_to_proto(snap: Snapshot) -> pb.Snapshot:
    return pb.Snapshot(
        key=snap.key, image_id=snap.image_id, chain_ids=snap.chain_ids,
        upper_dir=snap.upper_dir, work_dir=snap.work_dir, merged_dir=snap.merged_dir,
        mounted=snap.mounted, created=snap.created, node_id=snap.node_id, labels=snap.labels,
    )


def snapshot_from_proto(msg: pb.Snapshot) -> Snapshot:
    return Snapshot(
        key=msg.key, image_id=msg.image_id, chain_ids=list(msg.chain_ids),
        upper_dir=msg.upper_dir, work_dir=msg.work_dir, merged_dir=msg.merged_dir,
        mounted=msg.mounted, created=msg.created, node_id=msg.node_id, labels=dict(msg.labels),
    )


def changes_to_proto(changes: list[Change]) -> list[pb.SnapshotChange]:
    return [pb.SnapshotChange(path=c.path, kind=pb.ChangeKind.ValueType(int(c.kind)))
            for c in changes]


def changes_from_proto(msgs: list[pb.SnapshotChange]) -> list[Change]:
    return [Change(path=m.path, kind=ChangeKind(m.kind)) for m in msgs]


# -- commit and build (issues 3 and 7) --


def commit_to_proto(key: str, opts: CommitOptions) -> pb.CommitImageRequest:
    return pb.CommitImageRequest(
        key=key,
        container_config_json=json.dumps(opts.container_config).encode(),
        config_json=json.dumps(opts.config).encode() if opts.config is not None else b"",
        repo=opts.repo, tag=opts.tag, comment=opts.comment, author=opts.author,
        changes=opts.changes,
    )


def commit_from_proto(msg: pb.CommitImageRequest) -> tuple[str, CommitOptions]:
    return msg.key, CommitOptions(
        container_config=json.loads(msg.container_config_json) if msg.container_config_json else {},
        config=json.loads(msg.config_json) if msg.config_json else None,
        repo=msg.repo, tag=msg.tag, comment=msg.comment, author=msg.author,
        changes=list(msg.changes),
    )


def build_options_to_proto(o: BuildOptions) -> pb.BuildOptions:
    return pb.BuildOptions(
        tags=o.tags, dockerfile=o.dockerfile,
        build_args={k: v for k, v in o.build_args.items() if v is not None},
        build_args_unset=[k for k, v in o.build_args.items() if v is None],
        labels=o.labels, target=o.target, no_cache=o.no_cache, pull=o.pull, quiet=o.quiet,
        rm=o.rm, force_rm=o.force_rm, network_mode=o.network_mode, extra_hosts=o.extra_hosts,
        cpuset_cpus=o.cpuset_cpus, memory=o.memory, memswap=o.memswap, cpu_shares=o.cpu_shares,
        shm_size=o.shm_size, platform=o.platform, registry_config_json=o.registry_config_json,
        cache_from=o.cache_from, cpu_period=o.cpu_period, cpu_quota=o.cpu_quota,
    )


def build_options_from_proto(m: pb.BuildOptions) -> BuildOptions:
    args: dict[str, str | None] = dict(m.build_args)
    for k in m.build_args_unset:
        args[k] = None
    return BuildOptions(
        tags=list(m.tags), dockerfile=m.dockerfile or "Dockerfile", build_args=args,
        labels=dict(m.labels), target=m.target, no_cache=m.no_cache, pull=m.pull, quiet=m.quiet,
        rm=m.rm, force_rm=m.force_rm, network_mode=m.network_mode, extra_hosts=list(m.extra_hosts),
        cpuset_cpus=m.cpuset_cpus, memory=m.memory, memswap=m.memswap, cpu_shares=m.cpu_shares,
        shm_size=m.shm_size, platform=m.platform, registry_config_json=m.registry_config_json,
        cache_from=list(m.cache_from), cpu_period=m.cpu_period, cpu_quota=m.cpu_quota,
    )


def build_event_to_proto(ev: BuildEvent) -> pb.BuildProgress:
    return pb.BuildProgress(stream=ev.stream, aux_json=ev.aux_json, error=ev.error,
                            error_code=ev.error_code, status=ev.status, id=ev.id)


def build_event_from_proto(m: pb.BuildProgress) -> BuildEvent:
    return BuildEvent(stream=m.stream, aux_json=m.aux_json, error=m.error,
                      error_code=m.error_code, status=m.status, id=m.id)
