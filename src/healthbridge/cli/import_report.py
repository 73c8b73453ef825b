"""What ``healthbridge import`` tells its user: the progress bar, each failure (on the console and
as a JSON line in the errors file), and the closing summary table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from healthbridge.cli.import_sources import Where
from healthbridge.fhir.errors import FhirError

SHOWN_FAILURES = 20
"""Failures printed on the console; every one is in the errors file."""


def diagnostics_of(error: FhirError) -> str:
    """An error's OperationOutcome issues as one line: ``diagnostics (expression)``."""
    parts = []
    for issue in error.issues:
        text = issue.diagnostics or issue.code
        parts.append(f"{text} ({', '.join(issue.expression)})" if issue.expression else text)
    return "; ".join(parts) or str(error) or type(error).__name__


def outcome_diagnostics(outcome: Any) -> str:
    """The issues of an OperationOutcome resource (a batch-response entry's) as one line."""
    issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
    parts = []
    for issue in issues if isinstance(issues, list) else []:
        text = str(issue.get("diagnostics") or issue.get("code") or "")
        where = issue.get("expression") or []
        parts.append(f"{text} ({', '.join(where)})" if where else text)
    return "; ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Failure:
    where: Where
    diagnostics: str
    resources: int = 1
    """How many resources did not load because of it (a transaction's every entry)."""
    status: int | None = None
    resource: str | None = None
    """``Type/id`` when known."""

    def record(self) -> dict[str, Any]:
        return {
            "location": str(self.where),
            "file": str(self.where.file),
            "line": self.where.line,
            "entry": self.where.entry,
            "resource": self.resource,
            "status": self.status,
            "resources": self.resources,
            "diagnostics": self.diagnostics,
        }


class Report:
    """Counts what loaded and what failed; prints the first failures and writes all of them, one
    JSON object per line, to ``errors_path`` (created at the first failure)."""

    def __init__(self, console: Console, errors_path: Path) -> None:
        self.console = console
        self.errors_path = errors_path
        self.loaded = 0
        self.failed = 0
        self.failures = 0
        self.files_done = 0
        self.started = time.monotonic()
        self._file: IO[str] | None = None

    def __enter__(self) -> Report:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()

    def ok(self, count: int = 1) -> None:
        self.loaded += count

    def fail(self, failure: Failure) -> None:
        self.failed += failure.resources
        self.failures += 1
        if self._file is None:
            self.errors_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.errors_path.open("w", encoding="utf-8")
        self._file.write(json.dumps(failure.record(), ensure_ascii=False) + "\n")
        if self.failures <= SHOWN_FAILURES:
            text = f"{failure.where}: {failure.diagnostics}"
            self.console.print(f"[red]failed[/red] {escape(text)}", highlight=False, soft_wrap=True)
        elif self.failures == SHOWN_FAILURES + 1:
            self.console.print(f"[red]more failures: see {escape(str(self.errors_path))}[/red]")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        return self.loaded / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self, files: int) -> Table:
        table = Table(title="healthbridge import")
        for name in ("files", "resources loaded", "failed", "elapsed", "resources/s"):
            table.add_column(name, justify="right")
        table.add_row(
            f"{files:,}",
            f"{self.loaded:,}",
            f"[red]{self.failed:,}[/red]" if self.failed else "0",
            f"{self.elapsed:,.1f} s",
            f"{self.rate():,.0f}",
        )
        return table


class _Rate(ProgressColumn):
    """Resources loaded so far and their rate since the start."""

    def render(self, task: Task) -> Text:
        loaded = int(task.fields.get("resources", 0))
        elapsed = task.elapsed or 0.0
        rate = loaded / elapsed if elapsed > 0 else 0.0
        return Text(f"{loaded:,} resources  {rate:,.0f}/s", style="progress.data.speed")


def progress_bar(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        _Rate(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
