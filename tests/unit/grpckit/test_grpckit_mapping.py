"""grpckit's error mapping without sockets: to_status and from_rpc_error in both directions."""

from __future__ import annotations

import grpc
import pytest

import errdefs
from grpckit import from_rpc_error, metadata, rpc_errors, to_status

KINDS = sorted(
    (c for c in vars(errdefs).values()
     if isinstance(c, type) and issubclass(c, errdefs.EngineError)
     and c is not errdefs.EngineError),
    key=lambda c: c.kind,
)


def _rpc_error(code: grpc.StatusCode, details: str,
               trailing: tuple[tuple[str, str], ...] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


def test_every_kind_is_covered() -> None:
    assert len(KINDS) == 13
    assert {c.kind for c in KINDS} >= {"NotModified", "Conflict", "NotImplemented"}


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.kind)
def test_to_status_then_back(cls: type[errdefs.EngineError]) -> None:
    code, details, trailing = to_status(cls(f"message for {cls.kind}"))
    assert code is cls.grpc_code
    assert details == f"message for {cls.kind}"
    assert trailing == ((metadata.ERROR_KIND, cls.kind),)
    back = from_rpc_error(_rpc_error(code, details, trailing))
    assert type(back) is cls
    assert back.message == details


def test_not_modified_and_conflict_share_a_code_but_not_a_kind() -> None:
    nm, cf = to_status(errdefs.NotModified("a")), to_status(errdefs.Conflict("b"))
    assert nm[0] is cf[0] is grpc.StatusCode.FAILED_PRECONDITION
    assert type(from_rpc_error(_rpc_error(*nm))) is errdefs.NotModified
    assert type(from_rpc_error(_rpc_error(*cf))) is errdefs.Conflict


def test_plain_exception_is_internal() -> None:
    code, details, trailing = to_status(KeyError("x"))
    assert code is grpc.StatusCode.INTERNAL
    assert "KeyError" in details
    assert trailing == ((metadata.ERROR_KIND, "Internal"),)


def test_single_exception_group_is_unwrapped() -> None:
    group = ExceptionGroup("tg", [ExceptionGroup("inner", [errdefs.NotFound("No such image: x")])])
    assert to_status(group)[:2] == (grpc.StatusCode.NOT_FOUND, "No such image: x")
    two = ExceptionGroup("tg", [errdefs.NotFound("a"), errdefs.Conflict("b")])
    assert to_status(two)[0] is grpc.StatusCode.INTERNAL


def test_bare_code_without_kind_uses_the_code() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "busy"))
    assert type(err) is errdefs.Conflict and err.message == "busy"
    assert type(from_rpc_error(_rpc_error(grpc.StatusCode.DATA_LOSS, "x"))) is errdefs.Internal
    assert type(from_rpc_error(_rpc_error(grpc.StatusCode.UNAVAILABLE, "down"))) is \
        errdefs.Unavailable


def test_unknown_kind_name_is_unknown() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.NOT_FOUND, "x",
                                    ((metadata.ERROR_KIND, "Bogus"),)))
    assert type(err) is errdefs.Unknown


def test_rpc_errors_context_manager() -> None:
    with pytest.raises(errdefs.NotModified) as info, rpc_errors():
        raise _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "already started",
                         ((metadata.ERROR_KIND, "NotModified"),))
    assert isinstance(info.value.__cause__, grpc.RpcError)
