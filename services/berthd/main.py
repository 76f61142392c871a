"""berthd's entry point: parse flags, set up logging to stderr, run the daemon on anyio."""

from __future__ import annotations

import logging
import sys

import anyio

from berthd.config import ConfigError, parse_args
from berthd.daemon import run_daemon

__all__ = ["main"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL}


def main(argv: list[str] | None = None) -> None:
    """Run berthd; exits 1 with a message on bad configuration."""
    try:
        cfg = parse_args(argv)
    except ConfigError as e:
        print(f"berthd: {e}", file=sys.stderr)
        sys.exit(1)
    level = logging.DEBUG if cfg.debug else _LEVELS.get(cfg.log_level, logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # grpc and sqlalchemy are chatty at debug; keep them at warning unless asked.
    for noisy in ("grpc", "sqlalchemy", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level > logging.DEBUG else level)
    try:
        anyio.run(run_daemon, cfg, backend="asyncio")
    except KeyboardInterrupt:
        pass
    except Exception as e:
        for leaf in _leaves(e):
            logging.getLogger("berthd").critical("berthd failed: %s", leaf, exc_info=cfg.debug)
        sys.exit(1)


def _leaves(e: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups, so the log names the cause."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


if __name__ == "__main__":
    main()
