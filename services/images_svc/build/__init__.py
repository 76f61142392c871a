"""Classic (Dockerfile) builds: parser, word expansion, .dockerignore, context and the executor."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

import errdefs
from containers_svc.api import ContainersAPI
from images_svc.api import BuildEvent, BuildOptions
from images_svc.build.executor import Builder, BuildFailed

if TYPE_CHECKING:
    from images_svc.service import ImagesService

__all__ = ["BuildFailed", "Builder", "run_build"]

log = logging.getLogger(__name__)

# A quiet build sends a bare newline this often: JSON stream readers (the CLI, docker-py's
# decoder, compose) skip it as whitespace, and the write is what reveals a client that left.
KEEPALIVE_SECONDS = 5.0


class _ReceiverGone(errdefs.Canceled):
    """Raised inside the build when nobody reads its output any more."""


async def run_build(
    svc: ImagesService,
    containers: ContainersAPI | None,
    opts: BuildOptions,
    context: AsyncIterator[bytes],
    work_root: Path,
) -> AsyncIterator[BuildEvent]:
    """Run one build in a task; yield its events, a failure as the last event's ``error``.

    Resource handling: closing the iterator cancels the build; its containers, temporary
    mounts and work dir are removed either way.
    """
    work = work_root / f"tmp-{secrets.token_hex(8)}"
    send, receive = anyio.create_memory_object_stream[BuildEvent](64)

    async def emit(ev: BuildEvent) -> None:
        try:
            await send.send(ev)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise _ReceiverGone("the client went away") from None

    builder = Builder(svc, containers, opts, work, emit)

    async def task() -> None:
        async with send:
            final: BuildEvent | None = None
            try:
                await builder.run(context)
            except _ReceiverGone:
                pass
            except BuildFailed as e:
                final = BuildEvent(error=e.message, error_code=e.code)
            except errdefs.EngineError as e:
                final = BuildEvent(error=e.message, error_code=1)
            except Exception as e:
                log.exception("build failed")
                final = BuildEvent(error=f"internal error: {e}", error_code=1)
            finally:
                with anyio.CancelScope(shield=True):
                    await builder.cleanup()
            if final is not None:
                try:
                    await send.send(final)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass

    # NOTE: a plain asyncio task, not a task group: an anyio cancel scope cannot stay open
    # across this generator's yields (the consumer may be cancelled between two of them).
    runner = asyncio.ensure_future(task())
    try:
        async with receive:
            while True:
                ev: BuildEvent | None = None
                with anyio.move_on_after(KEEPALIVE_SECONDS):
                    try:
                        ev = await receive.receive()
                    except anyio.EndOfStream:
                        break
                # An empty event while a step is quiet: writing it is how a vanished client
                # is noticed (the build is then cancelled and cleaned up).
                yield ev if ev is not None else BuildEvent()
    finally:
        # Closed early (client gone) or done: cancel the build and wait for its cleanup.
        if not runner.done():
            runner.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([runner])
        if not runner.cancelled() and runner.exception() is not None:
            log.error("build task failed", exc_info=runner.exception())
