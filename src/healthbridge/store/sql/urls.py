"""Database URLs accepted by ``healthbridge`` (SQLAlchemy's URL forms, see
https://docs.sqlalchemy.org/en/20/core/engines.html#database-urls).

* ``sqlite:///relative/path.db`` (relative to the working directory) and ``sqlite:////abs/path``
* ``postgresql://user:password@host:port/db``; ``postgres://`` and ``postgresql+asyncpg://``
  mean the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_POSTGRES_DRIVERS = ("postgres", "postgresql", "postgresql+asyncpg")


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    kind: Literal["sqlite", "postgresql"]
    url: URL  # normalised: sqlite:////abs/path or postgresql+asyncpg://...

    @property
    def path(self) -> Path:
        """The SQLite database file (absolute)."""
        return Path(self.url.database or "")

    @property
    def dsn(self) -> str:
        """The libpq-style URL that asyncpg connects with."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def sqlalchemy_url(self) -> str:
        return self.url.render_as_string(hide_password=False)

    def __str__(self) -> str:
        """For messages: never shows the password."""
        return self.url.set(drivername=self.kind).render_as_string(hide_password=True)


def parse_url(url: str) -> DatabaseUrl:
    """Parse and normalise ``url``; ValueError says which forms are accepted."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is not None and parsed.drivername == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError(
                f"{url!r}: give the SQLite database file, e.g. sqlite:///data/healthbridge.db"
            )
        path = Path(database).expanduser().absolute()
        return DatabaseUrl("sqlite", URL.create("sqlite", database=str(path)))
    if parsed is not None and parsed.drivername in _POSTGRES_DRIVERS:
        return DatabaseUrl("postgresql", parsed.set(drivername="postgresql+asyncpg"))
    raise ValueError(
        f"Unsupported database URL {url!r}: use sqlite:///path/to/file.db or "
        "postgresql://user@host:port/database"
    )
