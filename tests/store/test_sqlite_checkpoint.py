"""SQLite WAL checkpoints run on their own thread, not in the writer's commits
(https://sqlite.org/wal.html#checkpointing): committed pages reach the database file within
about a second, and the writer connection never checkpoints by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import apsw

from healthbridge.store.sql import open_repository
from healthbridge.store.sql.checkpoint import INTERVAL_S
from tests.support.databases import sqlite_url


def _in_database_file(path: Path) -> int:
    """Patients in the main database file alone (``immutable=1`` ignores the WAL)."""
    connection = apsw.Connection(
        f"file:{path}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )
    try:
        return int(connection.execute("SELECT count(*) FROM resource").fetchall()[0][0])
    finally:
        connection.close()


async def test_committed_pages_reach_the_database_file_by_the_checkpointer(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    repo = await open_repository(url, migrate=True)
    try:
        for i in range(20):
            await repo.create("Patient", {"resourceType": "Patient", "id": f"p{i}"}, f"p{i}")
        path = tmp_path / "healthbridge.db"
        seen = [_in_database_file(path)]
        for _ in range(40):  # up to ten checkpoint intervals
            if seen[-1] == 20:
                break
            await asyncio.sleep(INTERVAL_S / 4)
            seen.append(_in_database_file(path))
        assert seen[-1] == 20, seen
        writer = repo._engine._writer._connection  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchall()[0][0] == 0
    finally:
        await repo.close()
