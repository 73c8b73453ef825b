"""``healthbridge terminology load|list|delete``: large code systems from licensed release files.

https://hl7.org/fhir/R4/terminology-service.html. The operator downloads a release under their
own licence (LOINC, SNOMED CT, RxNorm, ICD-10-CM, CVX; docs/terminology.md says where) and loads
it with ``healthbridge terminology load <format> <zip or directory>``. The load shows concepts
per second and the time left, commits every ``--batch-size`` concepts, and after an interruption
(Ctrl-C, a crash, a reboot) the same command resumes where it stopped. The version becomes
visible to the terminology operations only when the load completes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from healthbridge.cli.offline import with_repository
from healthbridge.cli.options import DataDirOpt, DbOpt, console, migrate_or_exit, settings_of
from healthbridge.settings import Settings
from healthbridge.store.terminology import TerminologyStore
from healthbridge.terminology.loader import FORMATS, LoadResult, load, open_source
from healthbridge.terminology.release import ReleaseError

T = TypeVar("T")
app = typer.Typer(no_args_is_help=True, help="Code systems loaded from release files")


class RateColumn(ProgressColumn):
    """Concepts per second over the last few batches."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "" if speed is None else f"{speed:,.0f} concepts/s", style="progress.data.speed"
        )


def _bar() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _with_store(settings: Settings, work: Callable[[TerminologyStore], Awaitable[T]]) -> T:
    return with_repository(settings, lambda repository: work(repository.terminology))


def _load(settings: Settings, kind: str, path: Path, version: str | None, batch: int) -> LoadResult:
    with ExitStack() as stack:
        with console.status(f"Reading {path.name} (large releases take a few minutes)"):
            source = stack.enter_context(open_source(kind, path, version, settings.data_dir))
        with _bar() as bar:
            title = f"{source.info.name or kind} {source.info.version}"
            task = bar.add_task(title, total=source.total)

            def progress(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total)

            return _with_store(
                settings, lambda store: load(store, source, batch_size=batch, progress=progress)
            )
    raise AssertionError("unreachable")


@app.command("load")
def load_command(
    kind: Annotated[str, typer.Argument(metavar="FORMAT", help=f"One of: {', '.join(FORMATS)}")],
    path: Annotated[
        Path, typer.Argument(exists=True, help="The release zip, its unzipped directory, or file")
    ],
    version: Annotated[
        str | None,
        typer.Option(help="The code system version [default: read from the release]"),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=100, max=100_000, help="Concepts per committed batch")
    ] = 2_000,
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Load (or resume loading) a release; the version becomes visible when complete."""
    if kind not in FORMATS:
        console.print(f"[red]Unknown format {kind!r}:[/red] use one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    try:
        result = _load(settings, kind, path, version, batch_size)
    except ReleaseError as exc:
        console.print(f"[red]Cannot load {path}:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/yellow] Run the same command again to resume.")
        raise typer.Exit(130) from None
    resumed = f" (resumed after {result.resumed_from:,})" if result.resumed_from else ""
    print(
        f"Loaded {result.info.url}|{result.info.version}: {result.info.count or 0:,} concepts"
        f"{resumed}; {result.loaded:,} in {result.seconds:.1f} s ({result.rate:,.0f}/s)"
    )


@app.command("list")
def list_command(database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """The loaded code systems: url, version, concept count, source format."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    systems = _with_store(settings, lambda store: store.code_systems())
    table = Table()
    for column in ("url", "version", "concepts", "format"):
        table.add_column(column, no_wrap=True)
    table.add_column("title")
    for info in systems:
        count = "" if info.count is None else f"{info.count:,}"
        table.add_row(info.url, info.version or "", count, info.source, info.title or "")
    console.print(table)


@app.command("delete")
def delete_command(
    url: Annotated[str, typer.Argument(help="The code system url, e.g. http://loinc.org")],
    version: Annotated[str, typer.Argument(help="The version, as `terminology list` shows it")],
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Remove a loaded (or partly loaded) code system version."""
    settings = settings_of(database=database, data_dir=data_dir)
    migrate_or_exit(settings)
    if not _with_store(settings, lambda store: store.delete_code_system(url, version)):
        console.print(
            f"[red]No code system {url}|{version}.[/red] See `healthbridge terminology list`."
        )
        raise typer.Exit(1)
    print(f"Deleted {url}|{version}")
