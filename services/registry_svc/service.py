"""RegistryService: pull, push and login over the OCI Distribution API, transport-free."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.to_thread

import errdefs
from dockerapi.reference import DEFAULT_DOMAIN, parse_reference
from images_svc.api import ProgressEvent
from images_svc.content import ContentStore
from images_svc.layers import LayerStore
from registry_svc.api import AuthConfig, DistributionInfo, LoginResult, PullOptions, PushOptions
from registry_svc.pull import ImagesForRegistry, Puller
from registry_svc.push import Pusher
from registry_svc.session import Session, TokenCache
from registry_svc.transport import TransportConfig, normalize_server_address

__all__ = ["RegistryService"]

log = logging.getLogger(__name__)

# Staged blobs of a pull that never finished are kept this long for a retry.
STAGED_TTL = 24 * 3600


class RegistryService:
    """The registry service's logic.

    Blobs are written straight into the node's content store (``<data_root>/content``, atomic per
    blob); images are registered through the images API, so split mode needs only the shared
    data root.
    """

    def __init__(
        self,
        data_root: Path,
        images: ImagesForRegistry,
        transport: TransportConfig,
        max_concurrent_downloads: int = 3,
    ) -> None:
        content = ContentStore(data_root / "content")
        layers = LayerStore(data_root / "layers")
        self._tokens = TokenCache()
        self._transport = transport
        self._staging = ContentStore(data_root / "registry" / "staging")
        self.puller = Puller(content, layers, images, transport, self._tokens, max_concurrent_downloads,
                             staging=self._staging)
        self.pusher = Pusher(content, data_root / "registry", images, transport, self._tokens)

    async def reconcile(self) -> None:
        """Drop half-written downloads and stale staged blobs; fresh verified ones stay."""
        await self._staging.reconcile()
        cutoff = time.time() - STAGED_TTL
        for digest in await self._staging.list_digests():
            path = self._staging.blob_path(digest)
            st = await anyio.to_thread.run_sync(os.stat, path)
            if st.st_mtime < cutoff:
                await self._staging.delete(digest)

    def pull_image(self, opts: PullOptions) -> AsyncIterator[ProgressEvent]:
        return self.puller.pull(replace(opts, auth=_for_host(opts.auth, opts.ref)))

    def push_image(self, opts: PushOptions) -> AsyncIterator[ProgressEvent]:
        return self.pusher.push(replace(opts, auth=_for_host(opts.auth, opts.ref)))

    async def inspect_distribution(self, ref: str, auth: AuthConfig) -> DistributionInfo:
        return await self.puller.distribution(ref, _for_host(auth, ref))

    async def login(self, auth: AuthConfig) -> LoginResult:
        host = normalize_server_address(auth.server_address or DEFAULT_DOMAIN)
        if not auth.username and not auth.identity_token:
            raise errdefs.InvalidArgument("login: a username is required")
        async with Session(self._transport, self._tokens, host, "", auth) as sess:
            await sess.check_login()
        log.info("login to %s as %s succeeded", host, auth.username)
        return LoginResult(status="Login Succeeded")


def _for_host(auth: AuthConfig, ref: str) -> AuthConfig:
    """Credentials made out to another registry are not sent to this one."""
    if not auth.server_address or auth.empty:
        return auth
    try:
        domain = parse_reference(ref.strip()).domain
    except errdefs.InvalidArgument:
        return auth  # the pull itself reports the bad reference
    if normalize_server_address(auth.server_address) != domain:
        log.info("not sending credentials for %s to %s", auth.server_address, domain)
        return AuthConfig()
    return auth
