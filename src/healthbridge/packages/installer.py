"""Installing a FHIR NPM package into the server: https://hl7.org/fhir/packages.html.

:meth:`PackageInstaller.install` runs the steps in order and writes nothing until the last:

1. read the package file safely (:mod:`.archive`) and its manifest (:mod:`.manifest`);
2. choose the resources (:mod:`.selection`: conformance resources always, examples on request);
3. validate every one of them against R4 (the same validator every write meets). Any invalid
   resource stops the install before anything is written, and each is reported by file with its
   OperationOutcome issues; with ``skip_invalid`` they are left out (and listed) instead.
   Resources of a type the API may not write (``AuditEvent``) are left out with a warning;
4. plan each resource's identity and action: create, update or unchanged (:mod:`.plan`);
5. write every change in one transaction Bundle through the service layer (validation, indexing,
   outbox, audit trail), so a package is installed whole or not at all; nothing to change means
   nothing is written and the result says so;
6. record the package (:mod:`.installed`), then make new SearchParameters searchable at once
   (:mod:`.searchable`), and warn about dependencies that are not installed (other than the R4
   core package, which is built in), naming what to install next.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from healthbridge.fhir.errors import FhirError, Issue
from healthbridge.fhir.meta import format_instant
from healthbridge.packages.archive import ArchiveLimits, PackageError, read_archive
from healthbridge.packages.installed import (
    InstalledPackage,
    InstalledPackages,
    InstalledResource,
    merged,
)
from healthbridge.packages.manifest import Manifest, missing_dependencies, read_manifest
from healthbridge.packages.plan import Action, Plan, Planner, Step, assigned_ids
from healthbridge.packages.searchable import Searchable, make_searchable
from healthbridge.packages.selection import Candidate, select
from healthbridge.rest.bundle import BundleLimits, BundleProcessor
from healthbridge.rest.service import SERVER_WRITTEN, FhirService
from healthbridge.store.repository import Repository

Progress = Callable[[str, int, int | None], None]
"""Called with (phase, done, total) as the install goes: read, validate, plan, write, index."""
_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class Invalid:
    """A resource the package cannot install as it is: its file and the validator's issues."""

    file: str
    issues: tuple[Issue, ...]


class InvalidPackage(PackageError):
    """Resources of the package are not valid R4: nothing was installed."""

    def __init__(self, message: str, invalid: Sequence[Invalid]) -> None:
        super().__init__(message)
        self.invalid = list(invalid)


@dataclass(frozen=True, slots=True)
class InstallOptions:
    examples: bool = False
    skip_invalid: bool = False
    reindex_barrier_seconds: float = 5.0
    """How long a reindex for new SearchParameters waits before it scans, so that running server
    processes index their new writes with them first (2.5 x their search_refresh_seconds)."""
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)


@dataclass(slots=True)
class InstallResult:
    manifest: Manifest
    steps: list[Step]
    skipped: list[Invalid]
    warnings: list[str]
    searchable: list[str]
    record: InstalledPackage

    @property
    def counts(self) -> Counter[tuple[str, Action]]:
        """(resource type, action) -> how many."""
        return Counter((s.type, s.action) for s in self.steps)

    @property
    def changed(self) -> bool:
        return any(s.action != "unchanged" for s in self.steps)


def _noop(phase: str, done: int, total: int | None) -> None:
    return None


class PackageInstaller:
    """Installs packages through ``service`` (whose repository holds the installed records)."""

    def __init__(self, service: FhirService, progress: Progress | None = None) -> None:
        self.service = service
        self.progress = progress or _noop

    @property
    def repository(self) -> Repository:
        return self.service.repository

    async def install(self, path: Path, options: InstallOptions) -> InstallResult:
        self.progress("read", 0, 1)
        archive = read_archive(path, options.limits)
        manifest = read_manifest(archive.manifest)
        self.progress("read", 1, 1)
        candidates = select(self.service.definitions, archive.files, examples=options.examples)
        warnings = [
            f"{name}: not a FHIR resource (no resourceType); passed over"
            for name in archive.ignored
        ]
        candidates, skipped = self._validate(candidates, options.skip_invalid, warnings)
        plan = await self._plan(manifest, candidates)
        steps = await self._write(plan)
        warnings += plan.warnings
        record = await self._record(manifest, steps, options.examples)
        searchable = await self._searchable(steps, options)
        warnings += searchable.warnings
        warnings += await self._dependencies(manifest)
        return InstallResult(manifest, steps, skipped, warnings, searchable.codes, record)

    # -- 3. validation ----------------------------------------------------------------------
    def _validate(
        self, candidates: list[Candidate], skip_invalid: bool, warnings: list[str]
    ) -> tuple[list[Candidate], list[Invalid]]:
        valid: list[Candidate] = []
        invalid: list[Invalid] = []
        for done, candidate in enumerate(candidates, 1):
            self.progress("validate", done, len(candidates))
            if candidate.type in SERVER_WRITTEN:
                warnings.append(
                    f"{candidate.file}: {candidate.type} resources are written by the server "
                    "only; passed over"
                )
                continue
            issues = self._issues(candidate)
            if any(i.severity in ("error", "fatal") for i in issues):
                invalid.append(Invalid(candidate.file, tuple(issues)))
            else:
                valid.append(candidate)
        if invalid and not skip_invalid:
            raise InvalidPackage(
                f"{len(invalid)} resource(s) of the package are not valid R4, so nothing was "
                "installed. Fix them, or install the rest with --skip-invalid.",
                invalid,
            )
        return valid, invalid

    def _issues(self, candidate: Candidate) -> list[Issue]:
        if not self.service.definitions.is_resource_type(candidate.type):
            text = f"{candidate.type!r} is not an R4 resource type"
            return [Issue("error", "not-supported", text, ("resourceType",))]
        return self.service.validate(candidate.resource, candidate.type)

    # -- 4-5. plan and write ----------------------------------------------------------------
    async def _plan(self, manifest: Manifest, candidates: list[Candidate]) -> Plan:
        planner = Planner(self.service, manifest.key)
        for done, candidate in enumerate(candidates, 1):
            await planner.add(candidate)
            self.progress("plan", done, len(candidates))
        return planner.plan

    async def _write(self, plan: Plan) -> list[Step]:
        changes = plan.changes
        if not changes:
            return plan.steps
        self.progress("write", 0, len(changes))
        processor = BundleProcessor(self.service, BundleLimits(max_entries=len(changes)))
        try:
            response = await processor.process(plan.bundle())
        except FhirError as exc:
            raise _write_failed(changes, exc) from None
        self.progress("write", len(changes), len(changes))
        return assigned_ids(plan, response)

    # -- 6. record, search parameters, dependencies -------------------------------------------
    async def _record(
        self, manifest: Manifest, steps: list[Step], examples: bool
    ) -> InstalledPackage:
        packages = InstalledPackages(self.repository.records)
        earlier = await packages.get(manifest.name, manifest.version)
        changed = any(s.action != "unchanged" for s in steps)
        now = tuple(
            InstalledResource(s.type, s.id, s.candidate.file, s.url, s.version)
            for s in steps
            if s.id is not None
        )
        if earlier is not None and not changed and set(now) <= set(earlier.resources):
            return earlier  # installing the same package again changes nothing
        record = InstalledPackage(
            name=manifest.name,
            version=manifest.version,
            title=manifest.title,
            canonical=manifest.canonical,
            fhir_versions=manifest.fhir_versions,
            dependencies=dict(manifest.dependencies),
            installed=format_instant(datetime.now(UTC)),
            examples=examples or (earlier is not None and earlier.examples),
            resources=merged(earlier.resources if earlier else (), now),
        )
        await packages.save(record)
        return record

    async def _searchable(self, steps: list[Step], options: InstallOptions) -> Searchable:
        changed = [
            s.resource | ({"id": s.id} if s.id else {})
            for s in steps
            if s.type == "SearchParameter" and s.action != "unchanged"
        ]
        if not changed:
            return Searchable()

        def indexed(done: int, total: int | None) -> None:
            self.progress("index", done, total)

        return await make_searchable(
            self.repository,
            self.service.definitions,
            changed,
            barrier_seconds=options.reindex_barrier_seconds,
            progress=indexed,
        )

    async def _dependencies(self, manifest: Manifest) -> list[str]:
        installed = await InstalledPackages(self.repository.records).versions()
        missing = missing_dependencies(manifest, installed)
        if not missing:
            return []
        names = ", ".join(
            f"{name}#{wanted}" + (f" (installed: {', '.join(have)})" if have else "")
            for name, wanted, have in missing
        )
        return [
            f"{manifest.key} depends on packages that are not installed: {names}. Its resources "
            "are installed; references into those packages (value sets, extensions, profiles) "
            "resolve once you install them: healthbridge packages install <name>-<version>.tgz"
        ]


def _write_failed(changes: list[Step], exc: FhirError) -> InvalidPackage:
    """The transaction failed and wrote nothing: name the file of the entry at fault."""
    texts = [str(exc), *(" ".join(i.expression) for i in exc.issues)]
    found = next((m for m in map(_ENTRY.search, texts) if m), None)
    index = int(found.group(1)) if found else None
    file = changes[index].candidate.file if index is not None and index < len(changes) else "?"
    return InvalidPackage(
        f"Writing the package failed at {file}, so nothing was installed: {exc}",
        [Invalid(file, tuple(exc.issues))],
    )
