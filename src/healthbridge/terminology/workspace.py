"""A scratch SQLite file that joins release files too large to hold in memory.

https://www.sqlite.org/tempfiles.html: release formats spread one concept over several files
(SNOMED CT RF2 descriptions and relationships, RxNorm atoms and relations, the LOINC hierarchy),
not always sorted by concept. Rather than hold them in dictionaries (SNOMED CT's ~1.6 million
descriptions would take about 1 GB of Python objects), the loaders copy the rows they need into
a temporary SQLite file, index them by concept, and read them back grouped by concept. Memory
stays bounded by SQLite's page cache (``cache_size``, 64 MB here) plus one batch of rows; the
file is deleted when the workspace closes.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]
INSERT_BATCH = 10_000


class Workspace:
    """One temporary SQLite database (in ``directory`` or the system temp directory)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="healthbridge-terminology-", dir=directory)
        self.db = sqlite3.connect(Path(self._dir.name) / "workspace.db")
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;"
            "PRAGMA temp_store=FILE;"
        )

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table(self, name: str, columns: Sequence[str], index: Sequence[str] = ()) -> None:
        """Create table ``name`` (fixed by the loader, never from input) and its indexes."""
        self.db.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
        for number, column in enumerate(index):
            self.db.execute(f"CREATE INDEX {name}_{number} ON {name} ({column})")

    def fill(self, name: str, width: int, rows: Iterable[Row]) -> int:
        """Insert ``rows`` (tuples of ``width`` values) in batches; returns how many."""
        statement = f"INSERT INTO {name} VALUES ({', '.join('?' * width)})"
        count, batch = 0, []
        for row in rows:
            batch.append(row)
            if len(batch) >= INSERT_BATCH:
                self.db.executemany(statement, batch)
                count, batch = count + len(batch), []
        self.db.executemany(statement, batch)
        self.db.commit()
        return count + len(batch)

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Row]:
        """Stream the rows of a query (its own cursor, so several may be read side by side)."""
        yield from self.db.cursor().execute(sql, parameters)

    def scalar(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, parameters).fetchone()
        return None if row is None else row[0]


def grouped(rows: Iterable[Row]) -> Iterator[tuple[Any, list[Row]]]:
    """Consecutive rows with the same first value, as ``(key, rows)`` (the input is sorted)."""
    key: Any = None
    group: list[Row] = []
    for row in rows:
        if group and row[0] != key:
            yield key, group
            group = []
        key = row[0]
        group.append(row)
    if group:
        yield key, group


def merged(keys: Iterable[Any], *streams: Iterable[tuple[Any, list[Row]]]) -> Iterator[Any]:
    """For each key of ``keys`` (ascending), the groups of each stream with that key (``[]``
    when a stream has none): a merge join of streams sorted by the same key."""
    iterators = [iter(stream) for stream in streams]
    heads: list[tuple[Any, list[Row]] | None] = [next(it, None) for it in iterators]
    for key in keys:
        found: list[list[Row]] = []
        for position, iterator in enumerate(iterators):
            head = heads[position]
            while head is not None and head[0] < key:
                head = next(iterator, None)
            if head is not None and head[0] == key:
                found.append(head[1])
                head = next(iterator, None)
            else:
                found.append([])
            heads[position] = head
        yield key, found
