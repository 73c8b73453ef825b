"""``healthbridge audit verify`` and the verifier catch every change to the stored trail, made with
raw SQL behind the server's back, on SQLite and PostgreSQL (HIPAA 164.312(b)/(c)(1): the trail
is tamper-evident; SECURITY.md "Audit")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import apsw
import asyncpg
import pytest
from typer.testing import CliRunner

from healthbridge.audit.keys import audit_key
from healthbridge.audit.verify import verify
from healthbridge.cli import app
from healthbridge.store.memory import MemoryRepository
from healthbridge.store.repository import Repository
from healthbridge.store.sql import open_repository
from tests.store.test_audit_log import entry
from tests.support import databases

KEY = b"k" * 32


class Raw:
    """SQL on the database itself, as someone with database access but without the key."""

    def __init__(self, kind: str, tmp_path: Path, url: str) -> None:
        self.kind = kind
        self.path = tmp_path / "healthbridge.db"
        self.url = url

    async def run(self, sqlite: str, postgres: str | None = None) -> None:
        if self.kind == "sqlite":
            connection = apsw.Connection(str(self.path))
            try:
                connection.execute(sqlite)
            finally:
                connection.close()
            return
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(postgres or sqlite)
        finally:
            await connection.close()


@pytest.fixture(params=databases.SQL_BACKEND_PARAMS)
async def trail(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Repository, Raw]]:
    """A SQL repository holding five audit rows, and raw access to its database."""
    if request.param == "sqlite":
        url = databases.sqlite_url(tmp_path)
        repository = await open_repository(url, migrate=True)
    else:
        postgres: databases.PostgresDatabase = request.getfixturevalue("postgres_database")
        url = postgres.require()
        await databases.empty_postgres(url)
        repository = await open_repository(url)
    await repository.audit.append([entry(n, patient="p1") for n in range(1, 4)], KEY)
    await repository.audit.append([entry(4), entry(5, source_seq=1)], KEY)
    try:
        yield repository, Raw(request.param, tmp_path, url)
    finally:
        await repository.close()


async def test_an_untouched_trail_verifies(trail: tuple[Repository, Raw]) -> None:
    repository, _ = trail
    seen: list[tuple[int, int]] = []
    verdict = await verify(repository.audit, KEY, progress=lambda n, t: seen.append((n, t)))
    assert verdict.ok and verdict.checked == 5 and verdict.head_seq == 5
    assert verdict.message == "the audit trail is intact"
    assert seen[-1] == (5, 5)


@pytest.mark.parametrize(
    ("sqlite", "postgres", "problem", "seq", "message"),
    [
        pytest.param(
            "UPDATE audit_event SET content = content || X'20' WHERE seq = 3",
            "UPDATE audit_event SET content = content || '\\x20'::bytea WHERE seq = 3",
            "changed",
            3,
            "row 3 does not match its digest (content or columns edited)",
            id="content",
        ),
        pytest.param(
            "UPDATE audit_event SET patient = 'p9' WHERE seq = 2",
            None,
            "changed",
            2,
            "row 2 does not match its digest (content or columns edited)",
            id="patient-column",
        ),
        pytest.param(
            "DELETE FROM audit_event WHERE seq = 3",
            None,
            "deleted",
            4,
            "seq 3 is missing (deleted before row 4)",
            id="middle-row",
        ),
        pytest.param(
            "DELETE FROM audit_event WHERE seq IN (2, 3)",
            None,
            "deleted",
            4,
            "seqs 2-3 are missing (deleted before row 4)",
            id="middle-rows",
        ),
        pytest.param(
            "DELETE FROM audit_event WHERE seq = 5",
            None,
            "truncated",
            5,
            "row 5 was deleted at the end (the head is at 5, the last row is 4)",
            id="last-row",
        ),
        pytest.param(
            "UPDATE audit_event SET chain = digest WHERE seq = 4",
            None,
            "chain",
            4,
            "row 4's chain does not follow from row 3's: its chain column was edited, or the "
            "row was forged",
            id="chain-column",
        ),
        pytest.param(
            "DELETE FROM audit_head",
            None,
            "truncated",
            5,
            "the head row is missing",
            id="head",
        ),
        pytest.param(
            "UPDATE audit_head SET seq = 4",
            None,
            "truncated",
            4,
            "the head (seq 4) does not match the last row (5)",
            id="head-rewound",
        ),
    ],
)
async def test_tampering_is_found(
    trail: tuple[Repository, Raw],
    sqlite: str,
    postgres: str | None,
    problem: str,
    seq: int,
    message: str,
) -> None:
    repository, raw = trail
    await raw.run(sqlite, postgres)
    verdict = await verify(repository.audit, KEY)
    assert not verdict.ok
    assert (verdict.problem, verdict.seq, verdict.message) == (problem, seq, message)


async def test_a_different_key_fails_at_the_first_row(trail: tuple[Repository, Raw]) -> None:
    repository, _ = trail
    verdict = await verify(repository.audit, b"x" * 32)
    assert (verdict.problem, verdict.seq) == ("chain", 1)
    assert "the audit key differs" in verdict.message


async def test_a_head_recorded_elsewhere_catches_a_consistently_rewound_tail(
    trail: tuple[Repository, Raw],
) -> None:
    """Deleting the last row and rewinding the head to the row before is consistent inside the
    database; a head seq noted elsewhere (the server logs it) shows the loss."""
    repository, raw = trail
    row4 = await repository.audit.read(4)
    chain = row4.chain.hex()
    await raw.run(
        f"DELETE FROM audit_event WHERE seq = 5; UPDATE audit_head SET seq = 4, chain = X'{chain}'",
        f"DELETE FROM audit_event WHERE seq = 5; "
        f"UPDATE audit_head SET seq = 4, chain = '\\x{chain}'::bytea",
    )
    assert (await verify(repository.audit, KEY)).ok
    verdict = await verify(repository.audit, KEY, expect_seq=5)
    assert (verdict.problem, verdict.seq) == ("truncated", 5)


async def test_the_memory_log_verifies_the_same_way() -> None:
    repository = MemoryRepository()
    log = repository.audit
    await log.append([entry(n) for n in range(1, 4)], KEY)
    assert (await verify(log, KEY)).ok
    log.rows[1] = log.rows[1]._replace(agent="someone-else")
    verdict = await verify(log, KEY)
    assert (verdict.problem, verdict.seq) == ("changed", 2)
    assert (await verify(MemoryRepository().audit, KEY)).message == "the audit trail is empty"


def test_the_command_reports_and_exits_1_on_tampering(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    key = audit_key(None, tmp_path)  # the server made audit.key on its first start

    async def fill() -> None:
        repository = await open_repository(url, migrate=True)
        try:
            await repository.audit.append([entry(n) for n in range(1, 6)], key)
        finally:
            await repository.close()

    databases.run_blocking(fill())
    runner = CliRunner()
    args = ["audit", "verify", "--database", url, "--data-dir", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rows checked: 5, head: 5" in result.stdout
    assert "OK: the audit trail is intact" in result.stdout
    apsw.Connection(str(tmp_path / "healthbridge.db")).execute(
        "UPDATE audit_event SET outcome = '8' WHERE seq = 3"
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "FAILED (changed at seq 3): row 3 does not match its digest" in result.stdout
    assert "rows checked: 2, head: 5" in result.stdout


def test_the_command_needs_the_key(tmp_path: Path) -> None:
    url = databases.sqlite_url(tmp_path)
    result = CliRunner().invoke(
        app, ["audit", "verify", "--database", url, "--data-dir", str(tmp_path / "elsewhere")]
    )
    assert result.exit_code == 2
    assert "No audit key" in result.output
