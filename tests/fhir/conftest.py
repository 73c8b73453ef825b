"""Shared fixtures for the pure FHIR layer tests (https://hl7.org/fhir/R4/)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.errors import Issue
from healthbridge.fhir.validation import Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FHIR_R4 = SHARED_DATA / "fhir-r4"


def shared_file(relative: str) -> Path:
    """A file under ``../shared/data``; skips the test with the reason when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (see ../shared/data/README.md)")
    return path


def package_resources(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(file name, raw JSON bytes)`` for every ``package/*.json`` resource of a FHIR package."""
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if "/" in name or not name.endswith(".json"):
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                yield name, handle.read()


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    return load_definitions()


@pytest.fixture(scope="session")
def validator(definitions: Definitions) -> Validator:
    return Validator(definitions)


def errors(issues: list[Issue]) -> list[Issue]:
    return [issue for issue in issues if issue.severity == "error"]


def only_issue(issues: list[Issue]) -> Issue:
    """The single issue reported; fails with the full list otherwise."""
    assert len(issues) == 1, json.dumps([issue.__repr__() for issue in issues], indent=1)
    return issues[0]
