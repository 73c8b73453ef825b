"""The access-control tests drive the service layer over every backend (memory, SQLite,
PostgreSQL) with the REST tests' fixtures."""

from tests.rest.conftest import backend, postgres_database, repository  # noqa: F401
