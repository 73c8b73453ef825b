"""Alembic migrations of the HealthBridge schema (see :mod:`healthbridge.store.sql.schema`)."""
