"""``healthbridge import``: bulk-load FHIR files through the FHIR service, in parallel.

Every write takes the same path as over HTTP (validation, then the repository with its outbox
event): resources one by one through :class:`~healthbridge.rest.service.FhirService`,
transaction and batch Bundles through the bundle processor
(https://hl7.org/fhir/R4/http.html#transaction). A resource that carries an id keeps it
(``PUT [type]/[id]``, update as create), so references between files keep working; with
``keep_ids`` that holds for the ``POST`` entries of bundles too (the Synthea case).

Order: files that hold only resources outside the Patient compartment (Organization,
Practitioner, Location...) load first, then everything else with ``workers`` units in flight.
A failure never stops the rest; each is reported with its place (``file:line``,
``Bundle.entry[i]``) and the reason.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from healthbridge.cli.import_report import (
    Failure,
    Report,
    diagnostics_of,
    outcome_diagnostics,
    progress_bar,
)
from healthbridge.cli.import_sources import (
    BundleUnit,
    Item,
    Unit,
    Where,
    discover,
    holds_shared_only,
    read_units,
)
from healthbridge.cli.offline import acting_as, open_service
from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.errors import Conflict, FhirError, Unavailable
from healthbridge.fhir.types import Resource
from healthbridge.rest.bundle import BundleLimits, BundleProcessor
from healthbridge.rest.errors import status_of
from healthbridge.rest.service import FhirService
from healthbridge.settings import Settings

BASE_URL = "http://localhost/fhir"
"""The base the bundle processor resolves relative references against (nothing is served)."""
TRANSACTION_ATTEMPTS = 3
"""Tries of a transaction that failed on a conflict or an unavailable database (two
transactions writing the same shared resource at once)."""
_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    paths: Sequence[Path]
    errors: Path
    workers: int = 4
    batch_size: int = 500
    keep_ids: bool = True


def keep_ids(bundle: Resource) -> Resource:
    """The bundle with each plain ``POST`` entry whose resource has an id turned into
    ``PUT [type]/[id]`` (update as create): the resource is stored under its own id, and a
    second import of the same file makes new versions rather than copies. Conditional creates
    (``ifNoneExist``) stay as they are."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return bundle
    return {**bundle, "entry": [_as_put(entry) for entry in entries]}


def _as_put(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    request, resource = entry.get("request"), entry.get("resource")
    if not isinstance(request, dict) or not isinstance(resource, dict):
        return entry
    type_, id = resource.get("resourceType"), resource.get("id")
    if (
        request.get("method") != "POST"
        or "ifNoneExist" in request
        or request.get("url") != type_
        or not isinstance(id, str)
        or not _ID.fullmatch(id)
    ):
        return entry
    return {**entry, "request": {"method": "PUT", "url": f"{type_}/{id}"}}


class Loader:
    """Runs units of work; records every outcome in the report and never raises."""

    def __init__(
        self, service: FhirService, processor: BundleProcessor, report: Report, keep: bool
    ) -> None:
        self.service = service
        self.processor = processor
        self.report = report
        self.keep_ids = keep
        """Turn bundles' plain POST entries of resources with an id into PUT (:func:`keep_ids`)."""

    async def run(self, unit: Unit) -> None:
        """Load ``unit``, recording what loaded and what failed."""
        if isinstance(unit, BundleUnit):
            await self._bundle(unit)
        else:
            for broken in unit.broken:
                self.report.fail(Failure(broken.where, broken.diagnostics, status=400))
            await asyncio.gather(*(self._write(item) for item in unit.items))

    async def _write(self, item: Item) -> None:
        resource = item.resource
        type_, id = resource["resourceType"], resource.get("id")
        try:
            if isinstance(id, str):
                await self.service.update(type_, id, resource, None)
            else:
                await self.service.create(type_, resource)
        except Exception as exc:  # any failure is reported; the rest goes on
            label = f"{type_}/{id}" if isinstance(id, str) else str(type_)
            self.report.fail(_failure(item.where, exc, resource=label))
        else:
            self.report.ok()

    async def _bundle(self, unit: BundleUnit) -> None:
        bundle = keep_ids(unit.bundle) if self.keep_ids else unit.bundle
        entries = bundle.get("entry")
        count = len(entries) if isinstance(entries, list) else 0
        try:
            response = await self._process(bundle, unit.kind)
        except Exception as exc:  # the transaction wrote nothing
            self.report.fail(_failure(_entry_named(unit.source, exc), exc, resources=count))
            return
        if unit.kind == "transaction":
            self.report.ok(count)
        else:
            self._batch_outcomes(unit.source, response)

    async def _process(self, bundle: Resource, kind: str) -> Resource:
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                return await self.processor.process(bundle, base_url=BASE_URL)
            except (Conflict, Unavailable):
                if kind != "transaction" or attempt == TRANSACTION_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _batch_outcomes(self, source: Path, response: Resource) -> None:
        """Each batch-response entry (http.html#transaction-response): 2xx loaded, else failed."""
        for index, entry in enumerate(response.get("entry") or []):
            answer = (entry.get("response") or {}) if isinstance(entry, dict) else {}
            status = str(answer.get("status", ""))
            if status[:1] == "2":
                self.report.ok()
                continue
            code = int(status[:3]) if status[:3].isdigit() else None
            reason = outcome_diagnostics(answer.get("outcome")) or status or "failed"
            self.report.fail(Failure(Where(source, entry=index), reason, status=code))


def _failure(
    where: Where, exc: Exception, *, resources: int = 1, resource: str | None = None
) -> Failure:
    if isinstance(exc, FhirError):
        return Failure(where, diagnostics_of(exc), resources, status_of(exc), resource)
    return Failure(where, f"{type(exc).__name__}: {exc}", resources, 500, resource)


def _entry_named(source: Path, exc: Exception) -> Where:
    """Where a failed transaction failed: the ``Bundle.entry[i]`` its error names, if any."""
    texts = [str(exc)]
    if isinstance(exc, FhirError):
        texts += [" ".join(issue.expression) for issue in exc.issues]
    for text in texts:
        found = _ENTRY.search(text)
        if found:
            return Where(source, entry=int(found.group(1)))
    return Where(source)


class Scheduler:
    """Feeds units to ``workers`` concurrent loaders, phase after phase; counts files done."""

    def __init__(self, loader: Loader, workers: int, batch_size: int) -> None:
        self.loader = loader
        self.workers = workers
        self.batch_size = batch_size
        self._pending: Counter[Path] = Counter()
        self._reading: set[Path] = set()
        self.on_progress: Callable[[int], None] = lambda files_done: None
        """Called after each unit with the number of files it finished (0 or 1)."""

    async def run(self, phases: Sequence[Sequence[Path]]) -> None:
        for phase in phases:
            if phase:
                await self._phase(phase)

    async def _phase(self, files: Sequence[Path]) -> None:
        queue: asyncio.Queue[Unit | None] = asyncio.Queue(maxsize=self.workers * 2)
        workers = [asyncio.create_task(self._work(queue)) for _ in range(self.workers)]
        try:
            for path in files:
                await self._read(path, queue)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()

    async def _read(self, path: Path, queue: asyncio.Queue[Unit | None]) -> None:
        self._reading.add(path)
        for unit in read_units(path, self.batch_size):
            self._pending[path] += 1
            await queue.put(unit)
        self._reading.discard(path)
        self._settle(path)

    async def _work(self, queue: asyncio.Queue[Unit | None]) -> None:
        while (unit := await queue.get()) is not None:
            await self.loader.run(unit)
            self._pending[unit.source] -= 1
            self._settle(unit.source)

    def _settle(self, path: Path) -> None:
        done = path not in self._reading and self._pending[path] == 0
        if done:
            del self._pending[path]
        self.on_progress(1 if done else 0)


def plan(files: Sequence[Path], definitions: Definitions) -> list[list[Path]]:
    """Two phases: files of shared (non-patient) resources first, then the rest."""
    shared = [path for path in files if holds_shared_only(path, definitions)]
    chosen = set(shared)
    return [shared, [path for path in files if path not in chosen]]


async def _import(
    settings: Settings, options: ImportOptions, files: list[Path], report: Report
) -> None:
    service = await open_service(settings)
    processor = BundleProcessor(service, BundleLimits(max_entries=1_000_000))
    loader = Loader(service, processor, report, options.keep_ids)
    scheduler = Scheduler(loader, options.workers, options.batch_size)
    # The audit trail names the operator account that ran the import as the author of every
    # write (the outbox actor; the worker tasks inherit it).
    try:
        with acting_as("import"), progress_bar(report.console) as progress:
            task = progress.add_task("Importing", total=len(files), resources=0)

            def advance(files_done: int) -> None:
                report.files_done += files_done
                progress.update(task, advance=files_done, resources=report.loaded)

            scheduler.on_progress = advance
            await scheduler.run(plan(files, service.definitions))
    finally:
        await service.repository.close()


def run_import(settings: Settings, options: ImportOptions, console: Console) -> int:
    """Load the files under ``options.paths``; the exit code: 0 all loaded, 1 anything failed,
    2 nothing to load."""
    files = discover(options.paths)
    if not files:
        console.print("[red]No FHIR files found[/red] (*.json, *.ndjson, *.json.gz, *.ndjson.gz)")
        return 2
    with Report(console, options.errors) as report:
        asyncio.run(_import(settings, options, files, report))
    Console().print(report.summary(len(files)))
    if report.failures:
        console.print(f"{report.failures:,} failure(s) written to {escape(str(options.errors))}")
        return 1
    return 0
