"""``healthbridge secrets ...``: the secrets the database keeps sealed at rest
(:mod:`healthbridge.infra.sealing`; docs/authorization.md, "Secrets at rest").

``status`` counts the stored secrets per sealing key id (the current key, a previous one, or
one not configured) and those still in plaintext (written before sealing). ``rotate`` seals
every one of them with the current key (``HEALTHBRIDGE_SECRET_KEY``); values sealed with a
previous key (``HEALTHBRIDGE_SECRET_KEYS_PREVIOUS``) are opened with it first. It writes each
record with compare-and-set, so it is safe while servers run, and running it again changes
nothing. To change the key::

    1. every server: HEALTHBRIDGE_SECRET_KEY=<new>, HEALTHBRIDGE_SECRET_KEYS_PREVIOUS=<old>;
       restart them
    2. healthbridge secrets rotate          (with the same two settings)
    3. healthbridge secrets status          (only the new key id left): drop the previous key

Exit codes: 0 done, 1 some values could not be opened (named; nothing else is lost), 2 no
usable secret key.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from healthbridge.auth.keys import SIGNING_KEYS
from healthbridge.auth.users import TOTP_SECRETS
from healthbridge.cli.auth_store import with_records
from healthbridge.cli.options import DataDirOpt, DbOpt, console, settings_of
from healthbridge.infra.sealing import Sealer
from healthbridge.infra.secret_keys import SecretKeyError, load_sealer
from healthbridge.settings import Settings
from healthbridge.store.records import RecordStore
from healthbridge.store.sealed_records import Census, Resealed, SealedField, census, reseal
from healthbridge.subscriptions.owners import SUBSCRIPTION_SECRETS

SEALED: tuple[SealedField, ...] = (SIGNING_KEYS, TOTP_SECRETS, SUBSCRIPTION_SECRETS)
"""Every sealed secret field of the server, in the order they are reported."""

app = typer.Typer(no_args_is_help=True, help="Secrets sealed at rest: status and key rotation")
ShownOpt = Annotated[int, typer.Option(help="Most failures listed per kind of secret")]


def _sealer(settings: Settings) -> Sealer:
    """The configured keys; never makes a new one (that would seal with a key no server has)."""
    try:
        return load_sealer(
            settings.secret_key, settings.secret_keys_previous, settings.data_dir, create=False
        )
    except SecretKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def status(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """How many stored secrets are sealed with each key, and how many are still plain."""
    settings = settings_of(database=database, data_dir=data_dir)
    try:
        sealer: Sealer | None = load_sealer(
            settings.secret_key, settings.secret_keys_previous, settings.data_dir, create=False
        )
    except SecretKeyError as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        sealer = None

    async def work(records: RecordStore) -> list[Census]:
        return [await census(records, sealed) for sealed in SEALED]

    found = with_records(settings, work)
    table = Table("secrets", "sealed with", "count")
    for counts in found:
        for key_id, count in sorted(counts.by_key.items()):
            table.add_row(counts.label, f"{key_id} ({_role(key_id, sealer)})", str(count))
        if counts.plain:
            table.add_row(counts.label, "plaintext (not sealed)", str(counts.plain))
        if not counts.by_key and not counts.plain:
            table.add_row(counts.label, "none stored", "0")
    console.print(table)
    if sealer is not None:
        _advice(found, sealer)


def _advice(found: list[Census], sealer: Sealer) -> None:
    previous = sorted(sealer.key_ids - {sealer.key_id})
    print(f"current key: {sealer.key_id}; previous keys: {', '.join(previous) or 'none'}")
    roles = [(_role(k, sealer), n) for c in found for k, n in c.by_key.items()]
    stale = sum(c.plain for c in found) + sum(n for role, n in roles if role == "previous")
    if stale:
        print(f"{stale} to re-seal: run `healthbridge secrets rotate`")
    unknown = sum(n for role, n in roles if role == "not configured")
    if unknown:
        print(
            f"{unknown} sealed with a key not configured: add it to "
            "HEALTHBRIDGE_SECRET_KEYS_PREVIOUS (or they cannot be opened)"
        )


def _role(key_id: str, sealer: Sealer | None) -> str:
    if sealer is None:
        return "no key configured"
    if key_id == sealer.key_id:
        return "current"
    return "previous" if key_id in sealer.key_ids else "not configured"


@app.command()
def rotate(database: DbOpt = None, data_dir: DataDirOpt = None, shown: ShownOpt = 20) -> None:
    """Seal every stored secret with the current key (plain ones and older keys' alike)."""
    settings = settings_of(database=database, data_dir=data_dir)
    sealer = _sealer(settings)
    print(f"Sealing with key {sealer.key_id}")

    async def work(records: RecordStore) -> list[Resealed]:
        results = []
        with Progress(console=console, transient=True) as progress:
            for sealed in SEALED:
                task = progress.add_task(f"Re-sealing {sealed.label}", total=None)

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done, total=total)

                results.append(await reseal(records, sealed, sealer, advance))
        return results

    results = with_records(settings, work)
    failed = 0
    for result in results:
        print(
            f"{result.label}: {result.resealed} re-sealed, {result.current} already sealed with "
            f"the current key, {len(result.failed)} failed"
        )
        for failure in result.failed[:shown]:
            console.print(f"  [red]{escape(failure)}[/red]", highlight=False)
        failed += len(result.failed)
    if failed:
        console.print(
            f"[red]{failed} values could not be re-sealed[/red]: add the key they were sealed "
            "with to HEALTHBRIDGE_SECRET_KEYS_PREVIOUS and run again"
        )
        raise typer.Exit(1)
