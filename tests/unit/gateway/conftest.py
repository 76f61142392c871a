"""Fixtures for the gateway transport tests: a real HttpServer on a unix socket in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from gateway_svc.http import App, HttpServer
from gateway_svc.listeners import open_listeners, serve

SERVER_VERSION = "9.9.9-test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    # Keep the path short: sun_path is limited to 108 bytes.
    return tmp_path / "api.sock"


ServeFn = Callable[..., AbstractAsyncContextManager[Path]]


@pytest.fixture
def serving(sock_path: Path) -> ServeFn:
    """``async with serving(app) as path:`` runs ``app`` on ``sock_path`` until the block ends."""

    @asynccontextmanager
    async def run(app: App, **server_kw: object) -> AsyncIterator[Path]:
        server = HttpServer(app, server_version=SERVER_VERSION, **server_kw)  # type: ignore[arg-type]
        listeners = await open_listeners([f"unix://{sock_path}"])
        async with anyio.create_task_group() as tg:
            await tg.start(serve, listeners, server)
            try:
                yield sock_path
            finally:
                tg.cancel_scope.cancel()

    return run


