"""berth's state store: async SQLAlchemy over SQLite (one host) or PostgreSQL (several hosts).

The schema is drawn in ``statestore.models``; migrations live in ``statestore/migrations`` and run
at ``open_store``.
"""

from __future__ import annotations

from .engine import StateStore, create_engine, load_node_id, open_store, sqlite_url

__all__ = ["StateStore", "create_engine", "load_node_id", "open_store", "sqlite_url"]
