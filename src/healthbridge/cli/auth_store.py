"""Shared plumbing of the ``users`` and ``clients`` commands: settings from the command line and
environment, and the authorization server's record store of the configured database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from healthbridge.settings import Settings
from healthbridge.store.records import RecordStore

T = TypeVar("T")
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


def settings_of(database: str | None, data_dir: Path | None) -> Settings:
    given = {"database": database, "data_dir": data_dir}
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None


def with_records(settings: Settings, work: Callable[[RecordStore], Awaitable[T]]) -> T:
    """Migrate the database, run ``work`` over its record store, close it."""
    from healthbridge.store.sql import migrate, open_repository

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        migrate(settings.database_url())
    except Exception as exc:  # report any driver error plainly, then stop
        console.print(f"[red]Could not prepare the database:[/red] {exc}")
        raise typer.Exit(1) from None

    async def run() -> T:
        repository = await open_repository(settings.database_url())
        try:
            return await work(repository.records)
        finally:
            await repository.close()

    return asyncio.run(run())


def read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        import sys

        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return value
