"""``healthbridge users ...``: the accounts that sign in to authorize apps (docs/authorization.md).

Each user links to the FHIR resource they are (``--fhir-user Patient/123``, ``Practitioner/...``,
``PractitionerRole/...`` or ``RelatedPerson/...``; SMART's ``fhirUser``) and may hold roles
(``admin``, ``auditor``, ``all-patients``...: docs/access-control.md).
Passwords are asked for twice without echo (or read from stdin with ``--password-stdin``) and
stored as Argon2id hashes. TOTP secrets are stored sealed with the secret key
(``HEALTHBRIDGE_SECRET_KEY`` or ``secret.key`` in the data directory: give the commands the
same one as the server).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from healthbridge.auth import totp
from healthbridge.auth.config import auth_config
from healthbridge.auth.users import User, UserError, UserStore
from healthbridge.cli.auth_store import read_secret, with_records
from healthbridge.cli.options import DataDirOpt, DbOpt, console, settings_of
from healthbridge.infra.secret_keys import SecretKeyError, load_sealer
from healthbridge.store.instants import system_clock
from healthbridge.store.records import RecordStore

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Manage user accounts (sign-in for SMART apps)")
StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


def _run(
    database: str | None, data_dir: Path | None, work: Callable[[UserStore], Awaitable[T]]
) -> T:
    settings = settings_of(database=database, data_dir=data_dir)
    try:
        sealer = load_sealer(settings.secret_key, settings.secret_keys_previous, settings.data_dir)
    except SecretKeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None

    async def on_records(records: RecordStore) -> T:
        return await work(UserStore(records, system_clock, sealer=sealer))

    try:
        return with_records(settings, on_records)
    except UserError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def create(
    username: Annotated[str, typer.Argument(help="The sign-in name")],
    fhir_user: Annotated[
        str | None,
        typer.Option(
            help="Patient/<id>, Practitioner/<id>, PractitionerRole/<id> or RelatedPerson/<id>"
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            help="A role (repeatable): admin, auditor, restricted-data, all-patients (sees "
            "every patient, not only those in their care)..."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Display name")] = "",
    with_totp: Annotated[bool, typer.Option("--totp", help="Require a TOTP code")] = False,
    password_stdin: StdinOpt = False,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user."""
    password = read_secret("Password", password_stdin)
    settings = settings_of(database=database, data_dir=data_dir)

    async def work(users: UserStore) -> tuple[User, str | None]:
        user = await users.create(
            username, password, fhir_user=fhir_user, roles=frozenset(role or ()), name=name
        )
        secret = None
        if with_totp:
            secret = totp.new_secret()
            user = await users.update(username, totp_secret=secret)
        return user, secret

    user, secret = _run(database, data_dir, work)
    print(f"Created user {user.username}")
    if secret:
        issuer = auth_config(settings).issuer
        print("TOTP: add to an authenticator app:", totp.provisioning_uri(secret, username, issuer))


@app.command("list")
def list_(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """List users."""

    async def work(users: UserStore) -> list[User]:
        return await users.all()

    users = _run(database, data_dir, work)
    table = Table("user", "fhirUser", "roles", "TOTP", "state")
    for user in users:
        status = "disabled" if user.disabled else "locked" if user.locked_until else "active"
        table.add_row(
            user.username,
            user.fhir_user or "",
            ",".join(sorted(user.roles)),
            "yes" if user.totp_secret else "",
            status,
        )
    console.print(table)


def _change(username: str, database: str | None, data_dir: Path | None, **changes: object) -> None:
    async def work(users: UserStore) -> User:
        return await users.update(username, **changes)

    _run(database, data_dir, work)
    print(f"Updated user {username}")


@app.command()
def disable(username: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Disable a user: no new sign-ins, and their refresh tokens stop working."""
    _change(username, database, data_dir, disabled=True)


@app.command()
def enable(username: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Enable a disabled user."""
    _change(username, database, data_dir, disabled=False)


@app.command()
def unlock(username: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Lift a lockout after failed sign-ins."""
    _change(username, database, data_dir, failures=0, locked_until=None)


@app.command("set-password")
def set_password(
    username: str,
    password_stdin: StdinOpt = False,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Set a new password (and lift any lockout)."""
    password = read_secret("New password", password_stdin)

    async def work(users: UserStore) -> User:
        return await users.set_password(username, password)

    _run(database, data_dir, work)
    print(f"Updated user {username}")


@app.command("totp")
def totp_(
    username: str,
    off: Annotated[bool, typer.Option("--off", help="Remove the second factor")] = False,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Give a user a new TOTP secret (printed as an otpauth:// URI), or remove it."""
    secret = None if off else totp.new_secret()
    _change(username, database, data_dir, totp_secret=secret)
    if secret:
        issuer = auth_config(settings_of(database=database, data_dir=data_dir)).issuer
        print("TOTP: add to an authenticator app:", totp.provisioning_uri(secret, username, issuer))
