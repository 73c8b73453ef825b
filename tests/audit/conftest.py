"""Fixtures for the audit trail's tests: every backend (memory, SQLite, PostgreSQL) with a fake
clock, as the store's tests have them, and the R4 validator."""

from __future__ import annotations

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.validation import Validator
from tests.store.conftest import backend, clock, postgres_database, repo  # noqa: F401


@pytest.fixture(scope="session")
def validator() -> Validator:
    return Validator(load_definitions())
