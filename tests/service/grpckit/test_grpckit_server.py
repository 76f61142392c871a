"""grpckit over a real grpc.aio server on a unix socket: error kinds, health, reflection, socket."""

from __future__ import annotations

import functools
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import errdefs
import grpckit
from berthapi.images.v1 import images_pb2, images_pb2_grpc
from berthapi.types.v1 import types_pb2

IMAGES = images_pb2.DESCRIPTOR.services_by_name["Images"].full_name
KINDS = sorted(
    (c for c in vars(errdefs).values()
     if isinstance(c, type) and issubclass(c, errdefs.EngineError)
     and c is not errdefs.EngineError),
    key=lambda c: c.kind,
)


def _fail(ref: str) -> None:
    """Raise what the test asked for by name."""
    if ref == "boom":
        raise ValueError("plain bug")
    if ref == "bare":
        raise AssertionError("handled by the servicer itself")
    raise errdefs.by_kind(ref)(f"{ref}: message for {ref}")


class FaultyImages(images_pb2_grpc.ImagesServicer):
    """Images servicer whose calls fail with the errdefs kind named in the request."""

    async def GetImage(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.ref == "ok":
            return images_pb2.GetImageResponse(image=images_pb2.Image(id="sha256:" + "a" * 64))
        if request.ref == "bare":  # a peer that sends a code without berth-error-kind
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "bare precondition")
        _fail(request.ref)
        return None

    async def ListImages(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # The failure comes out of a task group, wrapped in an ExceptionGroup.
        async def child() -> None:
            _fail("NotModified")

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        return images_pb2.ListImagesResponse()

    async def SaveImages(self, request: Any, context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[Any]:
        yield images_pb2.SaveImagesChunk(chunk=b"first")
        _fail(request.refs[0])

    async def ImageHistory(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return images_pb2.ImageHistoryResponse()

    async def LoadImages(self, request_iterator: AsyncIterator[Any],
                         context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # Bidirectional: fail with the kind named in the first chunk.
        async for req in request_iterator:
            yield types_pb2.Progress(status="got")
            _fail(req.chunk.decode())


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    addr = f"unix://{tmp_path}/g.sock"
    server = grpckit.build_server(
        [(images_pb2_grpc.add_ImagesServicer_to_server, FaultyImages())], addr, [IMAGES])
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.5))
        yield addr
        tg.cancel_scope.cancel()


@pytest.fixture
async def images(address: str) -> AsyncIterator[Any]:
    channel = grpckit.open_channel(address)
    try:
        yield grpckit.stub(images_pb2_grpc.ImagesStub, channel)
    finally:
        await channel.close()


@pytest.mark.anyio
@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind)
async def test_unary_error_round_trip(images: Any, cls: type[errdefs.EngineError]) -> None:
    with pytest.raises(errdefs.EngineError) as info:
        await grpckit.unary(images.GetImage(images_pb2.GetImageRequest(ref=cls.kind)))
    assert type(info.value) is cls
    assert info.value.message == f"{cls.kind}: message for {cls.kind}"


@pytest.mark.anyio
@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind)
async def test_server_stream_error_round_trip(images: Any, cls: type[errdefs.EngineError]) -> None:
    got: list[bytes] = []
    with pytest.raises(errdefs.EngineError) as info:
        async for chunk in grpckit.wrap_stream(
                images.SaveImages(images_pb2.SaveImagesRequest(refs=[cls.kind]))):
            got.append(chunk.chunk)
    assert got == [b"first"]  # what came before the error is delivered
    assert type(info.value) is cls
    assert info.value.message == f"{cls.kind}: message for {cls.kind}"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["NotModified", "Conflict", "boom"])
async def test_bidi_stream_error_round_trip(images: Any, kind: str) -> None:
    call = images.LoadImages()
    await call.write(images_pb2.LoadImagesRequest(chunk=kind.encode()))
    await call.done_writing()
    with pytest.raises(errdefs.EngineError) as info:
        async for _ in grpckit.wrap_stream(call):
            pass
    expected = errdefs.Internal if kind == "boom" else errdefs.by_kind(kind)
    assert type(info.value) is expected


@pytest.mark.anyio
async def test_not_modified_and_conflict_on_the_wire(images: Any) -> None:
    """Both are FAILED_PRECONDITION; only the trailing kind tells them apart."""
    for kind in ("NotModified", "Conflict"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await images.GetImage(images_pb2.GetImageRequest(ref=kind))
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        trailing = dict(info.value.trailing_metadata())
        assert trailing[grpckit.metadata.ERROR_KIND] == kind


@pytest.mark.anyio
async def test_plain_exception_becomes_internal_and_is_logged(
        images: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="grpckit.server"):
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await images.GetImage(images_pb2.GetImageRequest(ref="boom"))
        assert raw.value.code() is grpc.StatusCode.INTERNAL
        with pytest.raises(errdefs.Internal):
            await grpckit.unary(images.GetImage(images_pb2.GetImageRequest(ref="boom")))
    logged = [r for r in caplog.records if "GetImage" in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], ValueError)


@pytest.mark.anyio
async def test_exception_group_keeps_the_kind(images: Any) -> None:
    with pytest.raises(errdefs.NotModified):
        await grpckit.unary(images.ListImages(images_pb2.ListImagesRequest()))


@pytest.mark.anyio
async def test_handler_abort_passes_through_as_bare_code(images: Any) -> None:
    with pytest.raises(errdefs.Conflict) as info:
        await grpckit.unary(images.GetImage(images_pb2.GetImageRequest(ref="bare")))
    assert info.value.message == "bare precondition"


@pytest.mark.anyio
async def test_success_and_unimplemented(images: Any) -> None:
    resp = await grpckit.unary(images.GetImage(images_pb2.GetImageRequest(ref="ok")))
    assert resp.image.id == "sha256:" + "a" * 64
    with pytest.raises(errdefs.NotImplemented_):  # servicer base class default
        await grpckit.unary(images.TagImage(images_pb2.TagImageRequest(ref="x")))


@pytest.mark.anyio
async def test_unreachable_is_unavailable(tmp_path: Path) -> None:
    channel = grpckit.open_channel(f"unix://{tmp_path}/absent.sock")
    try:
        stub = grpckit.stub(images_pb2_grpc.ImagesStub, channel)
        with pytest.raises(errdefs.Unavailable):
            await grpckit.unary(stub.GetImage(images_pb2.GetImageRequest(ref="ok"), timeout=5))
        with pytest.raises(errdefs.Unavailable):
            async for _ in grpckit.wrap_stream(
                    stub.SaveImages(images_pb2.SaveImagesRequest(refs=["x"]), timeout=5)):
                pass
    finally:
        await channel.close()


@pytest.mark.anyio
async def test_translate_errors_decorator(images: Any) -> None:
    class Client:
        @grpckit.translate_errors
        async def get(self, ref: str) -> Any:
            return await images.GetImage(images_pb2.GetImageRequest(ref=ref))

        @grpckit.translate_errors
        async def save(self, ref: str) -> AsyncIterator[bytes]:
            async for chunk in images.SaveImages(images_pb2.SaveImagesRequest(refs=[ref])):
                yield chunk.chunk

    client = Client()
    with pytest.raises(errdefs.AlreadyExists):
        await client.get("AlreadyExists")
    with pytest.raises(errdefs.PermissionDenied):
        async for _ in client.save("PermissionDenied"):
            pass


@pytest.mark.anyio
async def test_health_answers_per_service(address: str) -> None:
    channel = grpckit.open_channel(address)
    try:
        health = grpckit.stub(health_pb2_grpc.HealthStub, channel)
        for name in ("", IMAGES):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(errdefs.NotFound):
            await grpckit.unary(health.Check(
                health_pb2.HealthCheckRequest(service="berthapi.nope.v1.Nope")))
    finally:
        await channel.close()


@pytest.mark.anyio
async def test_reflection_lists_services(address: str) -> None:
    channel = grpckit.open_channel(address)
    try:
        refl = grpckit.stub(reflection_pb2_grpc.ServerReflectionStub, channel)
        call = refl.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        resp = await call.read()
        names = {s.name for s in resp.list_services_response.service}
        assert {IMAGES, "grpc.health.v1.Health"} <= names
        await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=IMAGES))
        resp = await call.read()
        assert resp.file_descriptor_response.file_descriptor_proto  # the proto is served
        await call.done_writing()
    finally:
        await channel.close()


@pytest.mark.anyio
async def test_unix_socket_mode_and_cleanup(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "s.sock"  # parents are created
    # A stale socket (a crashed server's) is replaced.
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = grpckit.build_server([], f"unix://{path}", [])
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert sorted(os.listdir(path.parent)) == ["s.sock"]  # no staging dir left behind
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.1))
        with pytest.raises(errdefs.AlreadyExists):
            grpckit.build_server([], f"unix://{path}", [])  # a live server holds it
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        tg.cancel_scope.cancel()
    assert not path.exists()  # removed on stop


@pytest.mark.anyio
async def test_tcp_port_zero(tmp_path: Path) -> None:
    server = grpckit.build_server([], "tcp://127.0.0.1:0", [IMAGES])
    port = grpckit.bound_port(server)
    assert port > 0
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(grpckit.serve_grpc, server, grace=0.1))
        channel = grpckit.open_channel(f"tcp://127.0.0.1:{port}")
        try:
            health = grpckit.stub(health_pb2_grpc.HealthStub, channel)
            resp = await grpckit.unary(health.Check(health_pb2.HealthCheckRequest(service="")))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await channel.close()
        tg.cancel_scope.cancel()
