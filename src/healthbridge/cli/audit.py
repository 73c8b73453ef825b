"""``healthbridge audit verify``: check that the audit trail is whole and unchanged.

Walks the hash-chained log (:mod:`healthbridge.audit.verify`) with the same key the server uses
(``HEALTHBRIDGE_AUDIT_KEY``, or ``audit.key`` under the data directory). Exit code 0 when
intact, 1 when a row was changed or deleted or the tail truncated, 2 on usage errors (no key,
no database). HIPAA 164.312(b), IHE BALP.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from healthbridge.audit.keys import AuditKeyError, audit_key
from healthbridge.audit.verify import Verdict, verify
from healthbridge.cli.options import DataDirOpt, DbOpt, settings_of
from healthbridge.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The audit trail (AuditEvents)")
console = Console(stderr=True)


async def _verify(settings: Settings, key: bytes, expect_seq: int | None) -> Verdict:
    from healthbridge.store.sql import open_repository

    repository = await open_repository(settings.database_url())
    try:
        with Progress(
            TextColumn("Verifying the audit trail"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("verify", total=None)

            def progress(checked: int, total: int) -> None:
                bar.update(task, completed=checked, total=total)

            return await verify(repository.audit, key, progress=progress, expect_seq=expect_seq)
    finally:
        await repository.close()


@app.command("verify")
def verify_command(
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
    expect_seq: Annotated[
        int | None,
        typer.Option(help="A head seq recorded elsewhere that the log must have reached"),
    ] = None,
) -> None:
    """Recompute every row's digest and chain and the head; exit 1 on any tampering."""
    settings = settings_of(database=database, data_dir=data_dir)
    try:  # the key file lives in the data directory unless HEALTHBRIDGE_AUDIT_KEY is set
        key = audit_key(settings.audit_key, settings.data_dir, create=False)
    except AuditKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        verdict = asyncio.run(_verify(settings, key, expect_seq))
    except Exception as exc:  # the database cannot be opened: report plainly
        console.print(f"[red]Could not read the audit trail:[/red] {exc}")
        raise typer.Exit(2) from None
    head = "none" if verdict.head_seq is None else str(verdict.head_seq)
    print(f"rows checked: {verdict.checked}, head: {head}")
    if verdict.ok:
        print(f"OK: {verdict.message}")
        return
    print(f"FAILED ({verdict.problem} at seq {verdict.seq}): {verdict.message}")
    raise typer.Exit(1)
