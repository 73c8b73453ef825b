"""A real HealthBridge server process for durability tests, and scratch databases for it.

:class:`ServerProcess` runs ``python -m healthbridge.cli serve`` (which migrates the database
itself) in a new session on a free loopback port, waits for ``/readyz``, and is stopped with
SIGKILL to its whole process group (Granian's main process and its workers), as ``kill -9`` would.
:func:`scratch_database` gives each test an empty database of its own: a SQLite file under the
test's temporary directory, or a uniquely named PostgreSQL database created on the server of
``HEALTHBRIDGE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
and dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
from sqlalchemy.engine import make_url

from tests.support.databases import DEFAULT_POSTGRES_URL, PostgresDatabase, run_blocking

START_TIMEOUT_S = 90.0
"""Generous: CI runs on two cores and a PostgreSQL start migrates a new database first."""
REQUEST_TIMEOUT = httpx2.Timeout(20.0)
"""Every request the tests send is bounded: a server that hangs fails the test, never CI."""
APPLICATION_NAME = "healthbridge"
"""The application_name the server's PostgreSQL connections carry (asyncpg_pool.create_pool)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``healthbridge serve`` on ``url``; started, killed and restarted by the test."""

    def __init__(self, url: str, workdir: Path, *, workers: int = 1, pool_size: int = 10):
        self.url = url
        self.workdir = workdir
        self.workers = workers
        self.pool_size = pool_size
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def client(self) -> httpx2.Client:
        return httpx2.Client(base_url=self.base, timeout=REQUEST_TIMEOUT)

    def start(self) -> None:
        """Start the server and wait until it answers ``/readyz`` with 200."""
        assert self.proc is None, "already running"
        for _attempt in range(3):  # a free port can be taken again before Granian binds it
            if self._try_start():
                return
        raise AssertionError(f"the server did not start:\n{self.log_tail()}")

    def _try_start(self) -> bool:
        self.port = free_port()
        self.starts += 1
        log = (self.workdir / f"server-{self.starts}.log").open("wb")
        env = {
            **os.environ,
            "HEALTHBRIDGE_LOG_LEVEL": "warning",
            "HEALTHBRIDGE_ACCESS_LOG": "false",
            "HEALTHBRIDGE_DB_POOL_SIZE": str(self.pool_size),
        }
        command = [sys.executable, "-m", "healthbridge.cli", "serve", "--port", str(self.port)]
        command += ["--database", self.url, "--data-dir", str(self.workdir)]
        command += ["--workers", str(self.workers), "--no-auth"]
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx2.Client(timeout=httpx2.Timeout(5.0)) as probe:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.proc = None
                    return False
                with suppress(httpx2.TransportError):
                    if probe.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                        return True
                time.sleep(0.1)  # polling for readiness, not a timing assertion
        self.kill()
        raise AssertionError(f"the server was not ready in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL to the server's process group (main process and workers), then reap it."""
        if self.proc is None:
            return
        group = self.proc.pid  # the session leader: its pid is the group id
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        _wait_until_gone(group)

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        logs = sorted(self.workdir.glob("server-*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace")[-chars:] if logs else "(no log)"


def _alive_in_group(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies waiting to be reaped do not count:
    they hold no files, locks or sockets)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group and fields[0] != "Z":
                return True
    return False


def _wait_until_gone(group: int) -> None:
    """The workers die with the main process; wait (bounded) until the kernel is done."""
    deadline = time.monotonic() + 10
    while _alive_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.02)


# --- scratch databases ------------------------------------------------------------------------


def postgres_admin_url() -> str:
    """The maintenance database on the PostgreSQL server the tests use."""
    given = os.environ.get("HEALTHBRIDGE_TEST_POSTGRES_URL")
    if not given:
        return DEFAULT_POSTGRES_URL
    return make_url(given).set(database="postgres").render_as_string(hide_password=False)


def database_url(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(sql, *args, timeout=30)
        return rows
    finally:
        await connection.close()


def admin_sql(sql: str, *args: Any, url: str | None = None) -> list[asyncpg.Record]:
    """Run one statement as the PostgreSQL superuser the tests use (the maintenance database
    unless ``url`` names another)."""
    return run_blocking(_fetch(url or postgres_admin_url(), sql, *args))


@contextmanager
def scratch_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty (not yet migrated) database of ``kind``, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'durability.db'}"
        return
    name = f"healthbridge_durability_{uuid.uuid4().hex[:12]}"
    try:
        admin_sql(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        PostgresDatabase(None, f"cannot create a scratch PostgreSQL database: {exc}").require()
        raise
    try:
        yield database_url(postgres_admin_url(), name)
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_server_connections(database: str) -> int:
    """``pg_terminate_backend`` every connection the server holds to ``database``; how many."""
    rows = admin_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid()",
        database,
        APPLICATION_NAME,
    )
    return sum(1 for row in rows if row[0])


def database_name(url: str) -> str:
    name = make_url(url).database
    assert name
    return name
