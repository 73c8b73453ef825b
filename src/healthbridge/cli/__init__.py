"""The ``healthbridge`` command: serve, migrate, demo, import, explain, audit verify, version.

Every option also reads ``HEALTHBRIDGE_<OPTION>`` from the environment (via Settings). ``serve``
migrates the database, optionally loads the demo data, prints the FHIR base URL and starts Granian
with N workers; workers rebuild the app from the same environment.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from healthbridge import FHIR_VERSION, __version__
from healthbridge.cli import (
    audit,
    clients,
    packages,
    secrets,
    subscriptions,
    terminology,
    users,
)
from healthbridge.cli.options import DataDirOpt, DbOpt, console, migrate_or_exit, settings_of
from healthbridge.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="HealthBridge FHIR R4 server")
app.add_typer(users.app, name="users")
app.add_typer(clients.app, name="clients")
app.add_typer(audit.app, name="audit")
app.add_typer(packages.app, name="packages")
app.add_typer(terminology.app, name="terminology")
app.add_typer(subscriptions.app, name="subscriptions")
app.add_typer(secrets.app, name="secrets")

HostOpt = Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1]")]
PortOpt = Annotated[int | None, typer.Option(help="Port [default: 8080]")]


def _export(settings: Settings) -> None:
    """Hand the effective settings to Granian's worker processes through the environment."""
    for name, value in settings.model_dump().items():
        if isinstance(value, list):  # list settings are read back as comma-separated values
            os.environ[f"HEALTHBRIDGE_{name.upper()}"] = ",".join(map(str, value))
        elif isinstance(value, dict):  # mappings (required_profiles) are read back as JSON
            os.environ[f"HEALTHBRIDGE_{name.upper()}"] = json.dumps(value)
        elif value is not None:
            os.environ[f"HEALTHBRIDGE_{name.upper()}"] = str(value)
    os.environ["HEALTHBRIDGE_DATABASE"] = settings.database_url()


async def _load_demo(settings: Settings) -> tuple[int, int]:
    from healthbridge.demo import demo_resources
    from healthbridge.fhir.definitions import load_definitions
    from healthbridge.fhir.errors import NotFound
    from healthbridge.fhir.validation import Validator
    from healthbridge.rest.service import FhirService
    from healthbridge.store.sql import open_repository

    repository = await open_repository(settings.database_url())
    definitions = load_definitions()
    service = FhirService(repository, definitions, Validator(definitions))
    resources = list(demo_resources())
    loaded = skipped = 0
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Loading demo data", total=len(resources))
            for resource in resources:
                resource_type, id = resource["resourceType"], resource["id"]
                try:
                    await service.read(resource_type, id)
                    skipped += 1
                except NotFound:  # the same path as PUT: validated, then stored
                    await service.update(resource_type, id, resource, None)
                    loaded += 1
                progress.advance(task)
    finally:
        await repository.close()
    return loaded, skipped


@app.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [default: 1]")] = None,
    demo: Annotated[bool | None, typer.Option("--demo", help="Load the demo data set")] = None,
    no_auth: Annotated[
        bool | None, typer.Option("--no-auth", help="Local development only: no authorization")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
) -> None:
    """Migrate the database, optionally load demo data, and serve the FHIR API."""
    settings = settings_of(
        host=host,
        port=port,
        database=database,
        data_dir=data_dir,
        workers=workers,
        demo=demo,
        no_auth=no_auth,
    )
    if settings.no_auth and not settings.host_is_loopback():
        console.print(
            "[red]--no-auth is for local development only and needs a loopback "
            "--host (127.0.0.1, ::1 or localhost).[/red]"
        )
        raise typer.Exit(2)
    if bool(tls_cert) != bool(tls_key):
        console.print("[red]Give both --tls-cert and --tls-key, or neither.[/red]")
        raise typer.Exit(2)
    migrate_or_exit(settings)
    if settings.demo:
        loaded, skipped = asyncio.run(_load_demo(settings))
        console.print(f"Demo data: {loaded} resources loaded, {skipped} already present")
        if not settings.no_auth:
            from healthbridge.cli.auth_demo import prepare

            prepare(settings, console)
    scheme = "https" if tls_cert else "http"
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = f"{scheme}://{shown_host}:{settings.port}/fhir"
    if settings.no_auth:
        console.print(
            "[bold red]WARNING: --no-auth: authorization is OFF. Every request may read and "
            "write every patient's data. For local development on this machine only; never "
            "with real patient data.[/bold red]"
        )
    print(f"HealthBridge {__version__} (FHIR {FHIR_VERSION}) serving {base}", flush=True)
    _export(settings)
    _run_granian(settings, tls_cert, tls_key)


def _run_granian(settings: Settings, tls_cert: Path | None, tls_key: Path | None) -> None:
    from granian import Granian
    from granian.constants import Interfaces

    if settings.workers > 1:
        metrics_dir = settings.data_dir.resolve() / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    server = Granian(
        "healthbridge.app:create_app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        ssl_cert=tls_cert,
        ssl_key=tls_key,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=15,  # a worker that has not stopped 15 s after SIGTERM is killed
    )
    server.serve()


@app.command()
def migrate(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Create or upgrade the database schema to the latest version."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    console.print("Database is up to date.")


@app.command()
def demo(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """Load the demo data set (patients, encounters, observations, conditions, medications)."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    loaded, skipped = asyncio.run(_load_demo(settings))
    console.print(f"Demo data: {loaded} resources loaded, {skipped} already present")


@app.command("import")
def import_(
    paths: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            metavar="PATH",
            show_default=False,
            help="Files or directories (searched recursively for *.json, *.ndjson, *.json.gz, "
            "*.ndjson.gz): Bundles, single resources, NDJSON",
        ),
    ],
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Units of work loading at once")
    ] = 4,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="NDJSON lines (or resources) per unit")
    ] = 500,
    errors: Annotated[
        Path, typer.Option(help="Failures, one JSON object per line (written when any)")
    ] = Path("import-errors.jsonl"),
    keep_ids: Annotated[
        bool,
        typer.Option(
            "--keep-ids/--server-ids",
            help="Store the POST entries of transaction and batch Bundles under their "
            "resources' ids (as PUT); --server-ids: new ids, as POST asks",
        ),
    ] = True,
) -> None:
    """Bulk-load FHIR data: transaction, batch and collection Bundles, resources, NDJSON.

    Exit code 0 when everything loaded, 1 when anything failed (see --errors), 2 on usage errors.
    """
    from healthbridge.cli.importer import ImportOptions, run_import

    settings = settings_of(database=database, data_dir=data_dir)
    options = ImportOptions(paths, errors, workers, batch_size, keep_ids)
    migrate_or_exit(settings)
    raise typer.Exit(run_import(settings, options, console))


async def _explain(settings: Settings, search: str) -> str:
    from urllib.parse import parse_qsl

    from healthbridge.fhir.definitions import load_definitions
    from healthbridge.fhir.search.parse import SearchParser
    from healthbridge.jobs.search_registry import SearchRegistry
    from healthbridge.store.sql import open_repository
    from healthbridge.store.sql.repository import SqlRepository

    path, _, query = search.strip().lstrip("/").partition("?")
    path = path.removeprefix("fhir").strip("/")
    repository = await open_repository(settings.database_url())
    try:
        assert isinstance(repository, SqlRepository)
        registry = SearchRegistry(load_definitions())
        await registry.refresh(repository.jobs)  # custom SearchParameters in force
        repository.use_definitions(registry.index_definitions)
        parser = SearchParser(registry.search_definitions)
        parsed = parser.parse(path or None, parse_qsl(query, keep_blank_values=True), strict=True)
        return await repository.explain(parsed)
    finally:
        await repository.close()


@app.command()
def explain(
    search: Annotated[str, typer.Argument(help="A search, e.g. 'Observation?code=8302-2'")],
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the SQL of a search and the database's plan for it (for administrators)."""
    from healthbridge.fhir.errors import FhirError

    settings = settings_of(database=database, data_dir=data_dir)
    try:
        print(asyncio.run(_explain(settings, search)))
    except FhirError as exc:
        console.print(f"[red]Cannot explain that search:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def version() -> None:
    """Print the HealthBridge and FHIR versions."""
    print(f"healthbridge {__version__} (FHIR {FHIR_VERSION})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
