"""Alembic environment and revisions of berth's schema; run by statestore.migrate, not by hand."""
