"""The one place that turns exceptions into Docker API error responses (moby ``httpstatus``).

Every errdefs class carries its ``http_status``; nothing else in the gateway picks a status.
Anything that is not an :class:`errdefs.EngineError` is a bug: 500, logged with its traceback.
"""

from __future__ import annotations

import json
import logging

import errdefs
from gateway_svc.http import EmptyResponse, JSONResponse

__all__ = ["error_message", "error_response", "http_status", "stream_error_line"]

log = logging.getLogger("berth.gateway")


def http_status(exc: BaseException) -> int:
    """Return the HTTP status for ``exc``: its errdefs ``http_status``, else 500."""
    if isinstance(exc, errdefs.EngineError):
        return exc.http_status
    return 500


def error_message(exc: BaseException) -> str:
    """Return the text shown to the client for ``exc``."""
    if isinstance(exc, errdefs.EngineError):
        return exc.message
    text = str(exc)
    return f"internal error: {text}" if text else f"internal error: {type(exc).__name__}"


def _log(exc: BaseException, status: int) -> None:
    if not isinstance(exc, errdefs.EngineError):
        log.error("unhandled error in handler", exc_info=exc)
    elif status >= 500 and status != 499:
        log.error("handler returned error: %s", exc.message)
    else:
        log.debug("handler returned error %d: %s", status, exc.message)


def error_response(exc: BaseException) -> JSONResponse | EmptyResponse:
    """Build the ``{"message": ...}`` response for ``exc`` (304 has no body).

    Non-EngineErrors and 5xx errors are logged here, so callers need not log again.
    """
    status = http_status(exc)
    _log(exc, status)
    if status == 304:
        return EmptyResponse(304)
    return JSONResponse({"message": error_message(exc)}, status=status)


def stream_error_line(exc: BaseException) -> bytes:
    """Encode ``exc`` as an in-band error of a JSON progress stream (jsonmessage).

    Returns ``{"errorDetail":{"message":m},"error":m}`` plus a newline; the CLI prints
    ``m`` and exits 1.
    """
    _log(exc, http_status(exc))
    message = error_message(exc)
    doc = {"errorDetail": {"message": message}, "error": message}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
