"""Fixtures for the durability suite: a scratch database per test and real server processes.

Every case is parametrised by backend (``sqlite``; ``postgresql`` carries the ``postgres``
marker), so the normal run (``HEALTHBRIDGE_TEST_BACKENDS=memory,sqlite``) takes the SQLite
cases and CI's PostgreSQL pass (``-m postgres``) the PostgreSQL ones. Servers a test starts are
killed in teardown whatever happened.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.durability.server import ServerProcess, scratch_database
from tests.support.databases import SQL_BACKEND_PARAMS

CYCLES_VARIABLE = "HEALTHBRIDGE_DURABILITY_CYCLES"
SHORT_CYCLES = 3


def kill_cycles(short: int = SHORT_CYCLES) -> int:
    """Kill/restart cycles: ``short`` in the normal run, ``$HEALTHBRIDGE_DURABILITY_CYCLES`` for
    the full form (docs/durability.md)."""
    return int(os.environ.get(CYCLES_VARIABLE) or short)


@pytest.fixture(params=SQL_BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scratch_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with scratch_database(backend, tmp_path) as url:
        yield url


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Makes (unstarted) servers; every one is SIGKILLed in teardown."""
    made: list[ServerProcess] = []

    def make(url: str, **options: int) -> ServerProcess:
        workdir = tmp_path / f"server{len(made)}"
        workdir.mkdir()
        server = ServerProcess(url, workdir, **options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.kill()
