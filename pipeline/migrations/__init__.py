"""Alembic migrations for Heron's store."""
