"""Shared plumbing of the ``users`` and ``clients`` commands: settings from the command line and
environment, and the authorization server's record store of the configured database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer

from healthbridge.cli.offline import with_repository
from healthbridge.cli.options import migrate_or_exit
from healthbridge.settings import Settings
from healthbridge.store.records import RecordStore

T = TypeVar("T")


def with_records(settings: Settings, work: Callable[[RecordStore], Awaitable[T]]) -> T:
    """Migrate the database, run ``work`` over its record store, close it."""
    migrate_or_exit(settings)
    return with_repository(settings, lambda repository: work(repository.records))


def read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        import sys

        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return value
