"""Loading a release into the terminology store: https://hl7.org/fhir/R4/terminology-service.html.

The pipeline behind ``healthbridge terminology load``: open the release (:func:`open_source`),
then :func:`load` its concepts through :class:`~healthbridge.store.terminology.TerminologyStore`
in batches. Each batch commits with the new position, so a load that is killed resumes where it
stopped: ``start_load`` with the same fingerprint reports how many concepts are stored, and the
parser's stream (the same order every time) skips that many. ``finish_load`` then builds the
hierarchy index and makes the version visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from healthbridge.fhir.terminology.concepts import CodeSystemInfo
from healthbridge.store.terminology import TerminologyStore
from healthbridge.terminology import cvx, icd10cm, loinc, rxnorm, snomed_release
from healthbridge.terminology.release import Release, ReleaseError
from healthbridge.terminology.source import Source
from healthbridge.terminology.workspace import Workspace

Opener = Callable[[Release, Workspace, str | None], Source]
FORMATS: dict[str, Opener] = {
    "loinc": loinc.source,
    "snomed": snomed_release.source,
    "rxnorm": rxnorm.source,
    "icd10cm": lambda release, _, version: icd10cm.source(release, version),
    "cvx": lambda release, _, version: cvx.source(release, version),
}
"""Release formats by the name ``healthbridge terminology load <format>`` takes."""
BATCH_SIZE = 2_000
Progress = Callable[[int, int | None], None]
"""Called after each batch with (concepts stored, total when known)."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """``resumed_from`` concepts were stored by an earlier, interrupted run; ``loaded`` by this
    one, in ``seconds``."""

    info: CodeSystemInfo
    resumed_from: int
    loaded: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.loaded / self.seconds if self.seconds > 0 else 0.0


@contextmanager
def open_source(
    kind: str, path: Path, version: str | None = None, scratch: Path | None = None
) -> Iterator[Source]:
    """The release of format ``kind`` at ``path`` (directory, zip, or single file); its scratch
    files go to ``scratch`` (default: the system temp directory) and are removed on exit."""
    opener = FORMATS.get(kind)
    if opener is None:
        raise ReleaseError(f"unknown format {kind!r}: use one of {', '.join(FORMATS)}")
    release = Release(path)
    try:
        with Workspace(scratch) as workspace:
            yield opener(release, workspace, version)
    finally:
        release.close()


async def load(
    store: TerminologyStore,
    source: Source,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> LoadResult:
    """Store every concept of ``source`` (resuming an interrupted load of the same release)."""
    started = time.perf_counter()
    url, version = source.info.url, source.info.version
    if version is None:
        raise ReleaseError(f"{url}: the release names no version: pass --version")
    position = await store.start_load(source.info, source.fingerprint)
    done = resumed = position.done
    if progress:
        progress(done, source.total)
    stream = islice(source.concepts(), done, None)
    while batch := list(islice(stream, batch_size)):
        done += len(batch)
        await store.load_concepts(url, version, batch, done)
        if progress:
            progress(done, source.total)
    info = await store.finish_load(url, version)
    return LoadResult(info, resumed, done - resumed, time.perf_counter() - started)
