"""The classic builder: a Dockerfile run step by step over image records, RUN steps in containers.

Each step makes an image whose parent is the previous step's, as Docker's classic builder does.
Config-only steps (ENV, LABEL, CMD, ...) make an image without a new layer (history
``empty_layer``); COPY/ADD/WORKDIR write a layer tar directly; RUN creates a container through
the containers service, streams its log, waits, and commits the container's snapshot.

Cache: a step's image records its cache key as ``container_config`` (the run config with the
step as Cmd: ``#(nop) COPY file:<content hash> in /dst``, or the RUN command prefixed with the
build args in scope), so a step hits the cache when a child of the same parent image has the
same ``container_config``: parent, instruction, arguments, build args and copied content.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import logging
import os
import posixpath
import secrets
import shutil
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

import errdefs
from containers_svc.api import ContainersAPI, CreateRequest, LogsOptions
from dockerapi.platforms import host_arch
from dockerapi.reference import parse_reference
from dockerapi.timefmt import now_rfc3339
from images_svc.api import BuildEvent, BuildOptions
from images_svc.build.context import (
    apply_dockerignore,
    check_inside,
    glob,
    has_glob,
    hash_sources,
    resolve_in_root,
    unpack_context,
)
from images_svc.build.copier import CopyPlan, LayerTar, lookup_ids
from images_svc.build.dockerfile import (
    Instruction,
    Stage,
    parse_dockerfile,
    split_stages,
)
from images_svc.build.shell import expand_word, expand_words
from images_svc.changes import _healthcheck, _ports
from images_svc.commit import DOCKER_VERSION, add_layer, image_config, record_image, write_diff_tar
from images_svc.model import ImageRecord

if TYPE_CHECKING:
    from images_svc.service import ImagesService

__all__ = ["BuildFailed", "Builder", "apply_config_instructions"]

log = logging.getLogger(__name__)

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
_CONFIG_ONLY = frozenset({
    "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "USER", "VOLUME", "STOPSIGNAL", "HEALTHCHECK",
    "SHELL", "ONBUILD", "MAINTAINER", "ARG",
})
_ONBUILD_FORBIDDEN = frozenset({"ONBUILD", "FROM", "MAINTAINER"})
# Every key of a built image's config, as dockerd writes them (clients index them directly).
_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": None, "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None,
    "OnBuild": None, "Labels": None,
}
_MAX_URL_BYTES = 1 << 30


class BuildFailed(errdefs.InvalidArgument):
    """A build step failed; ``code`` is the exit code the CLI should return."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _goq(argv: list[str]) -> str:
    """Go's %q of a []string, as Docker writes CMD/ENTRYPOINT comments: ["a" "b"]."""
    return "[" + " ".join(json.dumps(a, ensure_ascii=False) for a in argv) + "]"


def _normalise(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


@dataclass(slots=True)
class _State:
    """One stage's build state."""

    name: str
    image: ImageRecord | None
    img: dict[str, Any]  # the current image's full config JSON
    config: dict[str, Any]  # the run config (the image's "config")
    args: dict[str, str | None] = field(default_factory=dict)  # ARGs declared in this stage
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    author: str = ""

    def env(self) -> dict[str, str]:
        """What $VAR sees: the stage's ARGs, overridden by its ENV."""
        out = {k: v for k, v in self.args.items() if v is not None}
        for e in self.config.get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out


class Builder:
    """One classic build; ``run`` sends BuildEvents to ``send`` and cleans up after itself."""

    def __init__(
        self,
        svc: ImagesService,
        containers: ContainersAPI | None,
        opts: BuildOptions,
        work: Path,
        send: Callable[[BuildEvent], Any],
    ) -> None:
        self.svc = svc
        self.containers = containers
        self.opts = opts
        self.work = work
        self.ctx = work / "context"
        self._send = send
        self.step = 0
        self.total = 0
        self.used_args: set[str] = set()
        self.meta_args: dict[str, str] = {}
        self.stage_names: dict[str, int] = {}
        self.stage_results: list[ImageRecord | None] = []
        self.live_containers: list[str] = []
        self.escape = "\\"
        self._allowed: set[str] | None = None  # --cache-from sources, resolved once

    # -- output ---------------------------------------------------------------------

    async def emit(self, text: str, force: bool = False) -> None:
        if self.opts.quiet and not force:
            return
        await self._send(BuildEvent(stream=text))

    # -- entry point ----------------------------------------------------------------

    async def run(self, context: AsyncIterator[bytes]) -> None:
        """The whole build; raises BuildFailed/EngineError on failure (the caller reports it)."""
        tags = [self._tag(t) for t in self.opts.tags]
        self._check_platform(self.opts.platform)
        await self._receive(context)
        text = await anyio.to_thread.run_sync(self._read_dockerfile)
        df = parse_dockerfile(text)
        self.escape = df.escape
        meta, stages = split_stages(df)
        if self.opts.target:
            names = [_stage_name(s).lower() for s in stages]
            if self.opts.target.lower() not in names:
                raise BuildFailed(f"failed to reach build target {self.opts.target} in Dockerfile")
            stages = stages[: names.index(self.opts.target.lower()) + 1]
        self.total = len(meta) + sum(1 + len(s.commands) for s in stages) + (1 if self.opts.labels else 0)
        for ins in meta:
            await self._step(ins)
            self._meta_arg(ins)
        state: _State | None = None
        for i, stage in enumerate(stages):
            state = await self._from(stage)
            for ins in stage.commands:
                await self._step(ins)
                await self._dispatch(state, ins)
            if i == len(stages) - 1 and self.opts.labels:
                self.step += 1
                text_labels = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.opts.labels.items()))
                await self.emit(f"Step {self.step}/{self.total} : LABEL {text_labels}\n")
                labels = dict(state.config.get("Labels") or {})
                labels.update(self.opts.labels)
                state.config["Labels"] = labels
                await self._commit_config(state, f"LABEL {text_labels}")
            self.stage_results.append(state.image)
            if state.name:
                self.stage_names[state.name.lower()] = i
        assert state is not None
        final = state.image
        if final is None:
            raise BuildFailed("No image was generated. Is your Dockerfile empty?")
        unused = sorted(k for k in self.opts.build_args if k not in self.used_args and k not in PROXY_ARGS)
        if unused:
            await self.emit(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        await self._send(BuildEvent(aux_json=json.dumps({"ID": final.id}).encode()))
        if self.opts.quiet:
            await self.emit(f"{final.id}\n", force=True)
        else:
            await self.emit(f"Successfully built {_short(final.id)}\n")
        for t in tags:
            await self.svc.tag_image(final.id, t, "")
            await self.emit(f"Successfully tagged {_familiar(t)}\n")

    async def cleanup(self) -> None:
        """Remove what the build leaves behind: containers still listed, the work dir."""
        for cid in list(self.live_containers):
            if self.containers is not None:
                try:
                    await self.containers.remove_container(cid, force=True, volumes=True, link=False)
                except errdefs.EngineError as e:
                    log.warning("build: removing container %s: %s", cid[:12], e.message)
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self.work, ignore_errors=True))

    # -- setup ----------------------------------------------------------------------

    @staticmethod
    def _tag(ref: str) -> str:
        from images_svc.service import _tag_target

        return _tag_target(ref, "").string()

    @staticmethod
    def _check_platform(plat: str) -> None:
        if not plat:
            return
        parts = plat.lower().split("/")
        if parts[0] != "linux" or (len(parts) > 1 and parts[1] != host_arch()):
            raise errdefs.InvalidArgument(
                f"image platform {plat} is not supported: this engine builds linux/{host_arch()}"
            )

    async def _receive(self, context: AsyncIterator[bytes]) -> None:
        await anyio.to_thread.run_sync(lambda: self.ctx.mkdir(parents=True))
        tar_path = self.work / "context.tar"
        f = await anyio.open_file(tar_path, "wb")
        try:
            buf = bytearray()
            async for chunk in context:
                buf += chunk
                if len(buf) >= 1 << 20:
                    await f.write(bytes(buf))
                    buf.clear()
            if buf:
                await f.write(bytes(buf))
        finally:
            await f.aclose()

        def unpack() -> None:
            with open(tar_path, "rb") as src:
                if src.read(1) == b"":
                    return  # an empty context
                src.seek(0)
                unpack_context(src, self.ctx)
            tar_path.unlink()

        await anyio.to_thread.run_sync(unpack)

    def _read_dockerfile(self) -> bytes:
        name = self.opts.dockerfile or "Dockerfile"
        candidates = [name] + (["dockerfile"] if name == "Dockerfile" else [])
        for cand in candidates:
            try:
                path = resolve_in_root(self.ctx, cand, strict=True)
            except errdefs.InvalidArgument:
                raise BuildFailed(
                    f"Cannot locate specified Dockerfile: {name}: forbidden path outside the "
                    "build context"
                ) from None
            if path.is_file():
                data = path.read_bytes()
                apply_dockerignore(self.ctx, cand)
                return data
        raise BuildFailed(f"Cannot locate specified Dockerfile: {name}")

    async def _step(self, ins: Instruction) -> None:
        self.step += 1
        await self.emit(f"Step {self.step}/{self.total} : {ins.original}\n")

    def _meta_arg(self, ins: Instruction) -> None:
        for name, default in self._arg_pairs(ins, self.meta_args):
            if name in self.opts.build_args:
                value = self.opts.build_args[name]
                self.used_args.add(name)
            else:
                value = default
            if value is not None:
                self.meta_args[name] = value

    def _arg_pairs(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        words = split_words_keep(ins.rest)
        if not words:
            raise errdefs.InvalidArgument("ARG requires at least one argument")
        for w in words:
            name, eq, default = w.partition("=")
            if not name:
                raise errdefs.InvalidArgument(f"ARG names can not be blank: {w}")
            out.append((name, expand_word(default, env, self.escape) if eq else None))
        return out

    # -- FROM -----------------------------------------------------------------------

    async def _from(self, stage: Stage) -> _State:
        ins = stage.from_
        await self._step(ins)
        words = ins.rest.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise BuildFailed("FROM requires either one or three arguments")
        base = expand_word(words[0], self.meta_args, self.escape)
        name = words[2] if len(words) == 3 else ""
        if "platform" in ins.flags:
            self._check_platform(expand_word(ins.flags["platform"], self.meta_args, self.escape))
        image: ImageRecord | None = None
        if base.lower() == "scratch":
            pass
        elif base.lower() in self.stage_names:
            image = self.stage_results[self.stage_names[base.lower()]]
        else:
            image = await self._base_image(base)
        if image is not None:
            await self.emit(f" ---> {_short(image.id)}\n")
        img = json.loads(image.config_json) if image else {}
        config = {**_CONFIG_DEFAULTS, **copy.deepcopy(img.get("config") or {})}
        env = list(config.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            config["Env"] = [*env, DEFAULT_PATH]
        state = _State(name=name, image=image, img=img, config=config)
        if config.get("Shell"):
            state.shell = list(config["Shell"])
        if image is not None:
            config["Image"] = image.id
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            config["OnBuild"] = None
            await self.emit(f"# Executing {len(triggers)} build trigger"
                            f"{'s' if len(triggers) > 1 else ''}\n")
            for trig in triggers:
                for tins in parse_dockerfile(trig).instructions:
                    if tins.cmd in _ONBUILD_FORBIDDEN:
                        raise BuildFailed(f"{tins.cmd} isn't allowed as an ONBUILD trigger")
                    await self._dispatch(state, tins)
        return state

    async def _base_image(self, ref: str) -> ImageRecord:
        """A FROM/--from image: local, else (or with --pull) pulled through the registry service."""
        local: ImageRecord | None = None
        try:
            local = await self.svc.get_image(ref)
        except errdefs.NotFound:
            pass
        except errdefs.InvalidArgument as e:
            raise BuildFailed(f"invalid reference format: {ref}: {e.message}") from None
        if local is not None and not self.opts.pull:
            return local
        try:
            parsed = parse_reference(ref)
        except errdefs.InvalidArgument:
            if local is not None:
                return local  # an image id: nothing to pull
            raise BuildFailed(f"invalid reference format: {ref}") from None
        registry = self.svc._registry
        if registry is None:
            if local is not None:
                return local
            raise BuildFailed(
                f"pull access denied for {parsed.familiar_name()}, repository does not exist or "
                "may require 'docker login': denied: requested access to the resource is denied"
            )
        from registry_svc.api import PullOptions

        try:
            async for ev in registry.pull_image(PullOptions(ref=ref, auth=self._auth_for(parsed.domain))):
                if ev.status and not self.opts.quiet:
                    await self._send(BuildEvent(status=ev.status, id=ev.id))
            return await self.svc.get_image(ref)
        except (errdefs.NotFound, errdefs.Unauthenticated, errdefs.PermissionDenied,
                errdefs.Unavailable, errdefs.InvalidArgument) as e:
            if local is not None:
                await self.emit(f"[Warning] pulling {ref} failed, using the local image: {e.message}\n")
                return local  # --pull falls back to the local image
            raise BuildFailed(e.message) from None

    def _auth_for(self, domain: str) -> Any:
        """The X-Registry-Config entry for ``domain`` as the registry service's AuthConfig."""
        from registry_svc.api import AuthConfig
        from registry_svc.transport import normalize_server_address

        try:
            doc = json.loads(self.opts.registry_config_json or b"{}")
        except ValueError:
            return AuthConfig()
        if not isinstance(doc, dict):
            return AuthConfig()
        for server, entry in doc.items():
            if isinstance(entry, dict) and normalize_server_address(str(server)) == domain:
                return AuthConfig(
                    username=str(entry.get("username") or ""),
                    password=str(entry.get("password") or ""),
                    identity_token=str(entry.get("identitytoken") or ""),
                    registry_token=str(entry.get("registrytoken") or ""),
                    server_address=str(server),
                )
        return AuthConfig()

    # -- dispatch -------------------------------------------------------------------

    async def _dispatch(self, state: _State, ins: Instruction) -> None:
        cmd = ins.cmd
        if cmd == "RUN":
            await self._run(state, ins)
        elif cmd in ("COPY", "ADD"):
            await self._copy(state, ins)
        elif cmd == "WORKDIR":
            await self._workdir(state, ins)
        elif cmd in _CONFIG_ONLY:
            comment = self._config_step(state, ins)
            await self._commit_config(state, comment)
        else:  # FROM inside a trigger is refused above; nothing else reaches here
            raise BuildFailed(f"unknown instruction: {cmd}")

    def _pairs(self, state: _State, ins: Instruction) -> list[tuple[str, str]]:
        env = state.env()
        words = split_words_keep(ins.rest)
        if not words:
            raise errdefs.InvalidArgument(f"{ins.cmd} requires at least one argument")
        if "=" not in words[0]:
            parts = ins.rest.strip().split(None, 1)
            if len(parts) < 2:
                raise errdefs.InvalidArgument(f"{ins.cmd} must have two arguments")
            return [(expand_word(parts[0], env, self.escape), expand_word(parts[1], env, self.escape))]
        out: list[tuple[str, str]] = []
        for w in words:
            if "=" not in w:
                raise errdefs.InvalidArgument(
                    f"Syntax error - can't find = in {w!r}. Must be of the form: name=value"
                )
            k, v = w.split("=", 1)
            k = expand_word(k, env, self.escape)
            if not k:
                raise errdefs.InvalidArgument(f"{ins.cmd} names can not be blank")
            out.append((k, expand_word(v, env, self.escape)))
        return out

    def _argv(self, state: _State, ins: Instruction) -> list[str]:
        argv = ins.json_args()
        if argv is not None:
            return argv
        return [*state.shell, ins.rest]

    def _config_step(self, state: _State, ins: Instruction) -> str:
        """Apply a config-only instruction; returns its history comment."""
        cfg = state.config
        cmd = ins.cmd
        env = state.env()
        if not ins.rest and cmd not in ("CMD", "ENTRYPOINT"):
            raise errdefs.InvalidArgument(f"{cmd} requires at least one argument")
        if cmd == "ENV":
            pairs = self._pairs(state, ins)
            entries = list(cfg.get("Env") or [])
            for k, v in pairs:
                entries = [e for e in entries if e.partition("=")[0] != k]
                entries.append(f"{k}={v}")
            cfg["Env"] = entries
            return "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        if cmd == "LABEL":
            pairs = self._pairs(state, ins)
            labels = dict(cfg.get("Labels") or {})
            labels.update(pairs)
            cfg["Labels"] = labels
            return "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        if cmd == "CMD":
            cfg["Cmd"] = self._argv(state, ins)
            state.cmd_set = True
            return f"CMD {_goq(cfg['Cmd'])}"
        if cmd == "ENTRYPOINT":
            argv = ins.json_args()
            cfg["Entrypoint"] = argv if argv is not None else (
                [*state.shell, ins.rest] if ins.rest else None)
            if not state.cmd_set:
                cfg["Cmd"] = None
            return f"ENTRYPOINT {_goq(cfg['Entrypoint'] or [])}"
        if cmd == "EXPOSE":
            words = [expand_word(w, env, self.escape) for w in ins.rest.split()]
            ports = dict(cfg.get("ExposedPorts") or {})
            new = _ports(" ".join(words))
            ports.update({p: {} for p in new})
            cfg["ExposedPorts"] = ports
            return "EXPOSE " + " ".join(new)
        if cmd == "USER":
            cfg["User"] = expand_word(ins.rest.strip(), env, self.escape)
            return f"USER {cfg['User']}"
        if cmd == "VOLUME":
            raw = ins.json_args()
            paths = [expand_word(p, env, self.escape) for p in raw] if raw is not None \
                else expand_words(ins.rest, env, self.escape)
            vols = dict(cfg.get("Volumes") or {})
            for p in paths:
                if not p.strip():
                    raise errdefs.InvalidArgument("VOLUME specified can not be an empty string")
                vols[p] = {}
            cfg["Volumes"] = vols
            return f"VOLUME [{' '.join(paths)}]"
        if cmd == "STOPSIGNAL":
            cfg["StopSignal"] = expand_word(ins.rest.strip(), env, self.escape)
            return f"STOPSIGNAL {cfg['StopSignal']}"
        if cmd == "HEALTHCHECK":
            hc = _healthcheck(ins.rest)
            cfg["Healthcheck"] = hc
            return "HEALTHCHECK " + json.dumps(hc, separators=(",", ":"))
        if cmd == "SHELL":
            argv = ins.json_args()
            if not argv:
                raise errdefs.InvalidArgument("SHELL requires the arguments to be in JSON form")
            state.shell = argv
            cfg["Shell"] = argv
            return f"SHELL {_goq(argv)}"
        if cmd == "ONBUILD":
            trigger = ins.rest.split(None, 1)[0].upper()
            if trigger in _ONBUILD_FORBIDDEN:
                raise errdefs.InvalidArgument(f"{trigger} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.rest]
            return f"ONBUILD {ins.rest}"
        if cmd == "MAINTAINER":
            state.author = ins.rest.strip()
            return f"MAINTAINER {state.author}"
        if cmd == "ARG":
            parts = []
            for name, default in self._arg_pairs(ins, env):
                value = default
                if name in self.opts.build_args:
                    self.used_args.add(name)
                    value = self.opts.build_args[name]
                elif name in self.meta_args and default is None:
                    value = self.meta_args[name]
                state.args[name] = value
                parts.append(name if default is None else f"{name}={default}")
            return "ARG " + " ".join(parts)
        raise BuildFailed(f"unknown instruction: {cmd}")

    # -- committing steps -----------------------------------------------------------

    def _cache_config(self, state: _State, cmd: list[str]) -> dict[str, Any]:
        cfg = copy.deepcopy(state.config)
        cfg["Cmd"] = cmd
        return _normalise(cfg)  # type: ignore[no-any-return]

    async def _cache_sources(self) -> set[str] | None:
        """With --cache-from, the only images whose steps may be reused: those named and their
        parents (names that resolve to nothing count for nothing); None without --cache-from."""
        if self._allowed is None and self.opts.cache_from:
            allowed: set[str] = set()
            for ref in self.opts.cache_from:
                try:
                    rec: ImageRecord | None = await self.svc.get_image(ref)
                except (errdefs.NotFound, errdefs.InvalidArgument):
                    continue
                while rec is not None and rec.id not in allowed:
                    allowed.add(rec.id)
                    rec = await self.svc._store.get(rec.parent) if rec.parent else None
            self._allowed = allowed
        return self._allowed

    async def _probe(self, state: _State, cache_cfg: dict[str, Any]) -> ImageRecord | None:
        if self.opts.no_cache:
            return None
        allowed = await self._cache_sources()
        parent = state.image.id if state.image else ""
        best: ImageRecord | None = None
        for cid in await self.svc._store.children(parent):
            if allowed is not None and cid not in allowed:
                continue
            rec = await self.svc._store.get(cid)
            if rec is None:
                continue
            try:
                cc = json.loads(rec.config_json).get("container_config")
            except ValueError:
                continue
            if cc == cache_cfg and (best is None or rec.created > best.created):
                best = rec
        return best

    async def _adopt(self, state: _State, rec: ImageRecord, cached: bool) -> None:
        if cached:
            await self.emit(" ---> Using cache\n")
        state.image = rec
        state.img = json.loads(rec.config_json)
        state.config["Image"] = rec.id
        await self.emit(f" ---> {_short(rec.id)}\n")

    def _extra(self, state: _State, cache_cfg: dict[str, Any], container: str = "") -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if state.author or state.img.get("author"):
            extra["author"] = state.author or state.img.get("author")
        if container:
            extra["container"] = container
        extra["container_config"] = cache_cfg
        extra["docker_version"] = DOCKER_VERSION
        return extra

    def _image_run_config(self, state: _State) -> dict[str, Any]:
        return _normalise(state.config)  # type: ignore[no-any-return]

    async def _commit_config(self, state: _State, comment: str) -> None:
        cache_cfg = self._cache_config(state, [*state.shell, "#(nop) ", comment])
        hit = await self._probe(state, cache_cfg)
        if hit is not None:
            await self._adopt(state, hit, cached=True)
            return
        created = now_rfc3339()
        hist = {"created": created, "created_by": " ".join(cache_cfg["Cmd"]), "empty_layer": True}
        img = image_config(state.img, self._image_run_config(state), [], hist,
                           self._extra(state, cache_cfg))
        rec = await record_image(self.svc, state.image, img, None, [])
        await self._adopt(state, rec, cached=False)

    @asynccontextmanager
    async def _view(self, image: ImageRecord | None) -> AsyncIterator[Path | None]:
        """A read-only look at ``image``'s filesystem (a temporary, unrecorded overlay mount)."""
        if image is None or not image.chain_ids:
            yield None
            return
        snaps = self.svc._snapshots
        key = secrets.token_hex(32)
        chains = list(image.chain_ids)
        await anyio.to_thread.run_sync(snaps.create, key)
        try:
            await anyio.to_thread.run_sync(snaps.mount, key, chains)
            yield snaps.paths(key).merged
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(snaps.remove, key)

    async def _commit_layer(
        self, state: _State, comment: str, produce: Callable[[Any, Path | None], None]
    ) -> None:
        cache_cfg = self._cache_config(state, [*state.shell, "#(nop) ", comment])
        hit = await self._probe(state, cache_cfg)
        if hit is not None:
            await self._adopt(state, hit, cached=True)
            return
        parent_chain = state.image.chain_ids[-1] if state.image and state.image.chain_ids else ""
        async with self._view(state.image) as root:
            layer = await add_layer(self.svc, parent_chain, lambda out: produce(out, root))
        hist = {"created": now_rfc3339(), "created_by": " ".join(cache_cfg["Cmd"])}
        img = image_config(state.img, self._image_run_config(state), [layer.diff_id], hist,
                           self._extra(state, cache_cfg))
        rec = await record_image(self.svc, state.image, img, layer, [])
        await self._adopt(state, rec, cached=False)

    # -- WORKDIR --------------------------------------------------------------------

    async def _workdir(self, state: _State, ins: Instruction) -> None:
        if not ins.rest.strip():
            raise errdefs.InvalidArgument("WORKDIR requires exactly one argument")
        wd = expand_word(ins.rest.strip(), state.env(), self.escape)
        state.config["WorkingDir"] = posixpath.normpath(
            posixpath.join("/", state.config.get("WorkingDir") or "/", wd))
        target = state.config["WorkingDir"]
        comment = f"WORKDIR {target}"
        hit = await self._probe(state, self._cache_config(state, [*state.shell, "#(nop) ", comment]))
        if hit is not None:  # known already: no need to look into the image
            await self._adopt(state, hit, cached=True)
            return
        async with self._view(state.image) as root:
            exists = root is not None and await anyio.to_thread.run_sync(
                lambda: resolve_in_root(root, target, strict=False).is_dir())
        if exists or target == "/":
            await self._commit_config(state, comment)
            return

        def produce(out: Any, root: Path | None) -> None:
            # Docker creates missing WORKDIR components 0755 root:root, whatever USER says.
            lt = LayerTar(out, root)
            lt.parents(lt.canonical(target) + "/x", None)
            lt.close()

        await self._commit_layer(state, comment, produce)

    # -- COPY / ADD -----------------------------------------------------------------

    async def _copy(self, state: _State, ins: Instruction) -> None:
        env = state.env()
        raw = ins.json_args()
        words = [expand_word(w, env, self.escape) for w in raw] if raw is not None \
            else [expand_word(w, env, self.escape) for w in ins.rest.split()]
        if len(words) < 2:
            raise errdefs.InvalidArgument(f"{ins.cmd} requires at least two arguments")
        srcs, dest = words[:-1], words[-1]
        wd = state.config.get("WorkingDir") or "/"
        keep_slash = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
        dest_abs = posixpath.normpath(posixpath.join("/", wd, dest)) + ("/" if keep_slash else "")
        from_ref = expand_word(ins.flags.get("from", ""), env, self.escape) if "from" in ins.flags else ""
        chown = expand_word(ins.flags.get("chown", ""), env, self.escape) if "chown" in ins.flags else ""
        chmod: int | None = None
        if ins.flags.get("chmod"):
            try:
                chmod = int(ins.flags["chmod"], 8)
            except ValueError:
                raise errdefs.InvalidArgument(f"invalid chmod parameter: {ins.flags['chmod']}") from None
            if chmod > 0o7777:
                raise errdefs.InvalidArgument(f"invalid chmod parameter: {ins.flags['chmod']}")
        if from_ref and ins.cmd == "ADD":
            raise errdefs.InvalidArgument("ADD does not support the --from flag")
        src_image: ImageRecord | None = None
        if from_ref:
            if from_ref.lower() in self.stage_names:
                src_image = self.stage_results[self.stage_names[from_ref.lower()]]
            elif from_ref.isdigit() and int(from_ref) < len(self.stage_results):
                src_image = self.stage_results[int(from_ref)]
            else:
                src_image = await self._base_image(from_ref)
        async with self._view(src_image) if from_ref else _null_view(self.ctx) as src_root:
            if src_root is None:
                raise BuildFailed(f"{ins.cmd} failed: no source files were specified")
            sources = await self._sources(ins, src_root, srcs, strict=not from_ref)
            digest = await anyio.to_thread.run_sync(
                hash_sources, [p for p, _ in sources], bool(from_ref))
            kind = "dir" if len(sources) == 1 and sources[0][0].is_dir() else (
                "file" if len(sources) == 1 else "multi")
            flags = "".join(f"--{k}={v} " for k, v in sorted(ins.flags.items()) if k in ("chown", "chmod"))
            if from_ref:
                flags = f"--from={from_ref} " + flags
            comment = f"{ins.cmd} {flags}{kind}:{digest} in {dest_abs} "
            user_chown = chown

            def produce(out: Any, root: Path | None) -> None:
                owner = lookup_ids(root, user_chown) if user_chown else None
                plan = CopyPlan(sources, dest_abs, owner, bool(from_ref), chmod, ins.cmd == "ADD")
                lt = LayerTar(out, root)
                lt.copy(plan)
                lt.close()

            await self._commit_layer(state, comment, produce)

    async def _sources(
        self, ins: Instruction, root: Path, srcs: list[str], strict: bool
    ) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = []
        for src in srcs:
            if ins.cmd == "ADD" and urllib.parse.urlsplit(src).scheme in ("http", "https"):
                out.append(await self._fetch(src))
                continue
            if strict:
                try:
                    check_inside(src)
                except errdefs.InvalidArgument as e:
                    raise BuildFailed(f"{ins.cmd} failed: {e.message}") from None
            names = await anyio.to_thread.run_sync(glob, root, src) if has_glob(src) else [src]
            if not names:
                raise BuildFailed(f"{ins.cmd} failed: no source files were specified")
            for name in names:
                try:
                    path = resolve_in_root(root, name, strict=strict)
                except errdefs.InvalidArgument as e:
                    raise BuildFailed(f"{ins.cmd} failed: {e.message}") from None
                if not path.exists():
                    where = "build context or excluded by .dockerignore" if strict else "image"
                    raise BuildFailed(
                        f"{ins.cmd} failed: file not found in {where}: stat {name}: "
                        "file does not exist"
                    )
                out.append((path, name))
        return out

    async def _fetch(self, url: str) -> tuple[Path, str]:
        """ADD <url>: only loopback hosts (no traffic leaves the machine)."""
        host = urllib.parse.urlsplit(url).hostname or ""
        ok = host == "localhost"
        try:
            ok = ok or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass
        if not ok:
            raise BuildFailed(f"ADD failed: fetching {url} is not allowed: only loopback URLs are")
        name = posixpath.basename(urllib.parse.urlsplit(url).path) or "__unnamed__"
        dest_dir = self.work / f"url-{secrets.token_hex(6)}"
        await anyio.to_thread.run_sync(dest_dir.mkdir)
        path = dest_dir / name
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise BuildFailed(f"ADD failed: {url}: {resp.status_code} {resp.reason_phrase}")
                f = await anyio.open_file(path, "wb")
                size = 0
                try:
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > _MAX_URL_BYTES:
                            raise BuildFailed(f"ADD failed: {url} is too large")
                        await f.write(chunk)
                finally:
                    await f.aclose()
                modified = resp.headers.get("Last-Modified")
        mtime = None
        if modified:
            try:
                mtime = parsedate_to_datetime(modified).timestamp()
            except (TypeError, ValueError):
                mtime = None

        def meta() -> None:
            os.chmod(path, 0o600)
            if mtime is not None:
                os.utime(path, (mtime, mtime))

        await anyio.to_thread.run_sync(meta)
        return path, name

    # -- RUN ------------------------------------------------------------------------

    async def _run(self, state: _State, ins: Instruction) -> None:
        if self.containers is None:
            raise errdefs.Unavailable("RUN needs the containers service, which is not connected")
        argv = self._argv(state, ins)
        env_keys = {e.partition("=")[0] for e in state.config.get("Env") or []}
        args_env = {k: v for k, v in state.args.items() if v is not None and k not in env_keys}
        for k in PROXY_ARGS:
            v = self.opts.build_args.get(k)
            if v is not None and k not in env_keys and k not in args_env:
                args_env[k] = v
                self.used_args.add(k)
        saved = sorted(f"{k}={v}" for k, v in args_env.items() if k not in PROXY_ARGS
                       or k in state.args)
        save_cmd = [f"|{len(saved)}", *saved, *argv] if saved else list(argv)
        cache_cfg = self._cache_config(state, save_cmd)
        hit = await self._probe(state, cache_cfg)
        if hit is not None:
            await self._adopt(state, hit, cached=True)
            return
        if state.image is None:
            raise BuildFailed(
                f"The command '{' '.join(argv)}' returned a non-zero code: 127 "
                "(the image has no filesystem: FROM scratch)", 127)
        cfg = copy.deepcopy(state.config)
        cfg.update({
            "Image": state.image.id, "Cmd": argv, "Entrypoint": [], "Tty": False,
            "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "OpenStdin": False,
            "Env": [*(cfg.get("Env") or []), *(f"{k}={v}" for k, v in sorted(args_env.items()))],
            "Healthcheck": {"Test": ["NONE"]}, "OnBuild": None,
        })
        hc: dict[str, Any] = {}
        o = self.opts
        if o.network_mode:
            hc["NetworkMode"] = o.network_mode
        if o.extra_hosts:
            hc["ExtraHosts"] = list(o.extra_hosts)
        for key, val in (("Memory", o.memory), ("MemorySwap", o.memswap), ("CpuShares", o.cpu_shares),
                         ("CpuPeriod", o.cpu_period), ("CpuQuota", o.cpu_quota), ("ShmSize", o.shm_size)):
            if val:
                hc[key] = val
        if o.cpuset_cpus:
            hc["CpusetCpus"] = o.cpuset_cpus
        created = await self.containers.create_container(
            CreateRequest(name="", config=cfg, host_config=hc, networking_config={}))
        cid = created.id
        self.live_containers.append(cid)
        await self.emit(f" ---> Running in {cid[:12]}\n")
        await self.containers.start_container(cid)
        async for entry in self.containers.container_logs(cid, LogsOptions(follow=True)):
            text = entry.data.decode("utf-8", "replace")
            # stderr in red, as dockerd's classic builder sends it.
            await self.emit(f"\x1b[91m{text}\x1b[0m" if entry.stream == "stderr" else text)
        code = 0
        async for ev in self.containers.wait_container(cid, "not-running"):
            if not ev.registered:
                code = ev.status_code
        if code != 0:
            if not self.opts.force_rm:
                self.live_containers.remove(cid)  # Docker keeps a failed step's container
            raise BuildFailed(
                f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
        snap = await self.svc.get_snapshot(cid)
        upper = Path(snap.upper_dir)
        parent_chain = state.image.chain_ids[-1] if state.image.chain_ids else ""
        layer = await add_layer(self.svc, parent_chain, lambda out: write_diff_tar(upper, out))
        hist = {"created": now_rfc3339(), "created_by": " ".join(save_cmd)}
        img = image_config(state.img, self._image_run_config(state), [layer.diff_id], hist,
                           self._extra(state, cache_cfg, container=cid))
        rec = await record_image(self.svc, state.image, img, layer, [])
        if self.opts.rm:
            await self.containers.remove_container(cid, force=True, volumes=True, link=False)
            self.live_containers.remove(cid)
            await self.emit(f" ---> Removed intermediate container {cid[:12]}\n")
        else:
            self.live_containers.remove(cid)
        await self._adopt(state, rec, cached=False)


def apply_config_instructions(config: dict[str, Any], instructions: list[Instruction]) -> dict[str, Any]:
    """Apply config-only instructions (CMD, ENV, ...) to a config, outside any build.

    WORKDIR, which a build turns into a layer, only sets WorkingDir here.
    """
    state = _State(name="", image=None, img={}, config=config)
    if config.get("Shell"):
        state.shell = list(config["Shell"])
    builder = Builder(None, None, BuildOptions(), Path("/nonexistent"), _no_events)  # type: ignore[arg-type]
    for ins in instructions:
        if ins.cmd == "WORKDIR":
            wd = expand_word(ins.rest.strip(), state.env())
            config["WorkingDir"] = posixpath.normpath(
                posixpath.join("/", config.get("WorkingDir") or "/", wd))
        else:
            builder._config_step(state, ins)
    return state.config


async def _no_events(ev: BuildEvent) -> None:
    return None


@asynccontextmanager
async def _null_view(root: Path) -> AsyncIterator[Path | None]:
    yield root


def _stage_name(stage: Stage) -> str:
    words = stage.from_.rest.split()
    return words[2] if len(words) == 3 and words[1].lower() == "as" else ""


def _familiar(ref: str) -> str:
    from images_svc.service import familiar

    return familiar(ref)


def split_words_keep(s: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes for the expansion to remove."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(s):
        c = s[i]
        if quote:
            cur.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
            if c in ("'", '"'):
                quote = c
            elif c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
        i += 1
    if cur:
        words.append("".join(cur))
    return words

