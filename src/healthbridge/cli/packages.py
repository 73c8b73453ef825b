"""``healthbridge packages ...``: install FHIR NPM packages (implementation guides) and list them.

https://hl7.org/fhir/packages.html and docs/packages.md. ``install FILE.tgz`` loads the package's
conformance resources (and its examples with ``--examples``) through the FHIR service layer in
one transaction (:mod:`healthbridge.packages`); the audit trail names the operator account as
the author of every write (outbox actor ``cli:packages:<user>``). ``list`` and ``show NAME``
read the installed package records.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from healthbridge.cli.offline import acting_as, open_service
from healthbridge.cli.options import DataDirOpt, DbOpt, console, migrate_or_exit, settings_of
from healthbridge.packages import (
    InstalledPackage,
    InstalledPackages,
    InstallOptions,
    InstallResult,
    InvalidPackage,
    PackageError,
    PackageInstaller,
)
from healthbridge.packages.plan import Action
from healthbridge.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Install FHIR packages (implementation guides)")
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged")
PHASES = {
    "read": "Reading",
    "validate": "Validating",
    "plan": "Planning",
    "write": "Writing",
    "index": "Indexing",
}


async def _install(settings: Settings, file: Path, options: InstallOptions) -> InstallResult:
    service = await open_service(settings)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with (
            acting_as("packages"),
            Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar,
        ):
            task = bar.add_task("Reading", total=None)

            def progress(phase: str, done: int, total: int | None) -> None:
                bar.update(task, description=PHASES[phase], completed=done, total=total)

            return await PackageInstaller(service, progress).install(file, options)
    finally:
        await service.repository.close()


def _summary(result: InstallResult) -> Table:
    counts = result.counts
    table = Table(
        "resource type", *ACTIONS, title=f"{result.manifest.key}: {result.manifest.title}"
    )
    for resource_type in sorted({t for t, _ in counts}):
        table.add_row(resource_type, *(str(counts[(resource_type, a)] or "") for a in ACTIONS))
    totals = [sum(n for (_, a), n in counts.items() if a == action) for action in ACTIONS]
    table.add_row("[bold]total[/bold]", *(f"[bold]{n}[/bold]" for n in totals))
    return table


def _report_invalid(error: InvalidPackage) -> None:
    for invalid in error.invalid:
        console.print(f"[red]{escape(invalid.file)}[/red]")
        for issue in invalid.issues:
            where = f" at {', '.join(issue.expression)}" if issue.expression else ""
            text = f"  {issue.severity} {issue.code}{where}: {issue.diagnostics}"
            console.print(escape(text))


def _report(result: InstallResult, seconds: float) -> None:
    Console().print(_summary(result))
    for skipped in result.skipped:
        count = sum(1 for i in skipped.issues if i.severity in ("error", "fatal"))
        console.print(f"[yellow]Skipped (invalid, {count} error(s)):[/yellow] {skipped.file}")
    for warning in result.warnings:
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}")
    if result.searchable:
        console.print(f"Searchable now: {', '.join(result.searchable)}")
    total = len(result.steps)
    if result.changed:
        console.print(f"Installed {result.manifest.key}: {total} resources in {seconds:.1f} s")
    else:
        console.print(
            f"Nothing changed: {result.manifest.key} is already installed "
            f"({total} resources unchanged)"
        )


@app.command()
def install(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="A FHIR package file, e.g. hl7.fhir.uv.ips-2.0.0.tgz"
        ),
    ],
    examples: Annotated[
        bool, typer.Option("--examples", help="Also install the package's examples")
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Install the valid resources and list the invalid ones (default: install "
            "nothing when any is invalid)",
        ),
    ] = False,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Install a FHIR NPM package: profiles, extensions, terminology, search parameters...

    Idempotent: installing the same package again changes nothing. Exit code 0 when installed
    (or already installed), 1 when nothing was installed (the reasons are printed).
    """
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    barrier = settings.search_refresh_seconds * 2.5
    options = InstallOptions(examples, skip_invalid, reindex_barrier_seconds=barrier)
    started = time.perf_counter()
    try:
        result = asyncio.run(_install(settings, file, options))
    except InvalidPackage as exc:
        _report_invalid(exc)
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    except PackageError as exc:
        console.print(f"[red]Cannot install the package:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    _report(result, time.perf_counter() - started)


def _table(*columns: str, title: str | None = None) -> Table:
    """A table whose first column (the name) stays on one line and whose other long values
    wrap instead of being cut."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=index == 0)
    return table


async def _installed(settings: Settings, name: str | None) -> list[InstalledPackage]:
    from healthbridge.store.sql import open_repository

    repository = await open_repository(settings.database_url())
    try:
        packages = InstalledPackages(repository.records)
        return await (packages.named(name) if name else packages.all())
    finally:
        await repository.close()


@app.command("list")
def list_(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """List the installed packages."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    table = _table("package", "title", "resources", "examples", "installed", "dependencies")
    for package in asyncio.run(_installed(settings, None)):
        dependencies = ", ".join(f"{n}#{v}" for n, v in sorted(package.dependencies.items()))
        table.add_row(
            package.key,
            package.title,
            str(len(package.resources)),
            "yes" if package.examples else "",
            package.installed[:16].replace("T", " "),
            dependencies,
        )
    Console().print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="A package name, or name#version")],
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the resources an installed package installed."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    found = asyncio.run(_installed(settings, name))
    if not found:
        console.print(
            f"[red]{escape(name)} is not installed[/red] (see `healthbridge packages list`)"
        )
        raise typer.Exit(1)
    for package in found:
        table = _table("resource", "url|version", "file", title=f"{package.key}: {package.title}")
        for resource in sorted(package.resources, key=lambda r: (r.type, r.id)):
            canonical = f"{resource.url}|{resource.version or ''}" if resource.url else ""
            table.add_row(resource.reference, canonical, resource.file)
        Console().print(table)
