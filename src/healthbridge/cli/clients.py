"""``healthbridge clients ...``: registered apps and backend services (docs/authorization.md).

``create`` registers a public app (``--auth none``, PKCE), a confidential app with a secret
(``--auth client_secret_basic`` or ``client_secret_post``; the secret is printed once) or with
keys (``--auth private_key_jwt`` and ``--jwks FILE`` or ``--jwks-uri URL``). ``--backend`` makes
a SMART backend service (client_credentials, ``system/`` scopes). Clients are disabled, not
deleted, so their history stays readable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from healthbridge.auth.clients import AUTH_METHODS, Client, ClientError, ClientStore
from healthbridge.cli.auth_store import with_records
from healthbridge.cli.options import DataDirOpt, DbOpt, console, settings_of
from healthbridge.store.records import RecordStore

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Manage registered client apps and services")
JwksOpt = Annotated[Path | None, typer.Option(help="A JSON Web Key Set file (public keys)")]
JwksUriOpt = Annotated[str | None, typer.Option(help="The URL of the client's JWKS")]


def _run(
    database: str | None, data_dir: Path | None, work: Callable[[ClientStore], Awaitable[T]]
) -> T:
    async def with_store(records: RecordStore) -> T:
        return await work(ClientStore(records))

    try:
        return with_records(settings_of(database=database, data_dir=data_dir), with_store)
    except ClientError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _jwks(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        console.print(f"[red]Cannot read {path}: {exc}[/red]")
        raise typer.Exit(2) from None
    if not isinstance(value, dict):
        console.print(f"[red]{path} is not a JSON Web Key Set[/red]")
        raise typer.Exit(2)
    return value


@app.command()
def create(
    name: Annotated[str, typer.Option(help="The app's name, shown on the consent page")],
    client_id: Annotated[
        str | None, typer.Option("--id", help="The client id [default: generated]")
    ] = None,
    auth: Annotated[
        str, typer.Option(help=f"Token endpoint authentication: {', '.join(AUTH_METHODS)}")
    ] = "none",
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="An exact redirect URI (repeatable)")
    ] = None,
    scope: Annotated[str, typer.Option(help="The scopes it may ask for")] = (
        "launch launch/patient openid fhirUser offline_access patient/*.rs"
    ),
    grant_type: Annotated[list[str] | None, typer.Option(help="A grant type (repeatable)")] = None,
    backend: Annotated[
        bool, typer.Option("--backend", help="A backend service: client_credentials only")
    ] = False,
    role: Annotated[list[str] | None, typer.Option(help="A role (repeatable)")] = None,
    jwks: JwksOpt = None,
    jwks_uri: JwksUriOpt = None,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register a client; prints its id (and secret, once)."""
    grants = grant_type or (
        ["client_credentials"] if backend else ["authorization_code", "refresh_token"]
    )
    client = Client(
        client_id or "",
        name,
        auth,
        tuple(redirect_uri or ()),
        frozenset(grants),
        scope,
        jwks=_jwks(jwks),
        jwks_uri=jwks_uri,
        roles=frozenset(role or ()),
    )

    async def work(clients: ClientStore) -> tuple[Client, str | None]:
        return await clients.register(client)

    stored, secret = _run(database, data_dir, work)
    print(f"client_id: {stored.client_id}")
    if secret:
        print(f"client_secret: {secret}  (shown once; store it now)")


@app.command("list")
def list_(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """List clients."""

    async def work(clients: ClientStore) -> list[Client]:
        return await clients.all()

    table = Table("client_id", "name", "auth", "grants", "scope", "state")
    for client in _run(database, data_dir, work):
        table.add_row(
            client.client_id,
            client.name,
            client.auth_method,
            ",".join(sorted(client.grant_types)),
            client.scope,
            "disabled" if client.disabled else "active",
        )
    console.print(table)


def _change(client_id: str, database: str | None, data_dir: Path | None, **changes: Any) -> None:
    async def work(clients: ClientStore) -> Client:
        return await clients.update(client_id, **changes)

    _run(database, data_dir, work)
    print(f"Updated client {client_id}")


@app.command()
def disable(client_id: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Disable a client: no new tokens; its refresh tokens stop working."""
    _change(client_id, database, data_dir, disabled=True)


@app.command()
def enable(client_id: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Enable a disabled client."""
    _change(client_id, database, data_dir, disabled=False)


@app.command("rotate-secret")
def rotate_secret(client_id: str, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Give a secret-based client a new secret (the old one stops working at once)."""

    async def work(clients: ClientStore) -> str:
        return await clients.rotate_secret(client_id)

    secret = _run(database, data_dir, work)
    print(f"client_secret: {secret}  (shown once; store it now)")


@app.command("set-keys")
def set_keys(
    client_id: str,
    jwks: JwksOpt = None,
    jwks_uri: JwksUriOpt = None,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Replace a private_key_jwt client's keys (a JWKS file, or the URL it is fetched from)."""
    if (jwks is None) == (jwks_uri is None):
        console.print("[red]Give exactly one of --jwks and --jwks-uri.[/red]")
        raise typer.Exit(2)
    _change(client_id, database, data_dir, jwks=_jwks(jwks), jwks_uri=jwks_uri)
