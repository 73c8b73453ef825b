"""What every ``healthbridge`` command shares: the ``--database`` and ``--data-dir`` options,
settings from the environment overridden by the options given, and migrating the database with
a plain error message."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from healthbridge.settings import Settings

console = Console(stderr=True)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="sqlite:///file.db or postgresql://user@host/db [default: SQLite under --data-dir]",
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Data directory [default: ./healthbridge-data]")
]


def settings_of(**given: Any) -> Settings:
    """Settings from the environment, overridden by the options given on the command line
    (exit 2 with the reason when they are invalid)."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


def migrate_or_exit(settings: Settings) -> None:
    """Create or upgrade the schema (exit 1 with the driver's error when that fails)."""
    from healthbridge.store.sql import migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        migrate(settings.database_url())
    except Exception as exc:  # report any driver error plainly, then stop
        console.print(
            f"[red]Could not prepare the database:[/red] {exc}\n"
            "Check --database / HEALTHBRIDGE_DATABASE and that the server is running."
        )
        raise typer.Exit(1) from None
