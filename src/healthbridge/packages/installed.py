"""The record of installed packages: https://hl7.org/fhir/packages.html.

Each installed package version is one durable record (kind ``package``, key ``name#version``)
in the server's :class:`~healthbridge.store.records.RecordStore`: its manifest facts
(title, canonical, FHIR versions, dependencies), when it was installed, whether its examples
were, and the resources it installed (type, id, url, version, file). ``healthbridge packages
list`` and ``show`` read them, and dependency checks ask which versions of a package are here.

The record is written after the package's transaction commits. Should the process stop between
the two, the resources are there but the record is not: installing the package again finds every
resource unchanged and writes the record (installing is idempotent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from healthbridge.store.records import RecordStore

KIND = "package"
PAGE = 1000


@dataclass(frozen=True, slots=True)
class InstalledResource:
    type: str
    id: str
    file: str
    url: str | None = None
    version: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"


@dataclass(frozen=True, slots=True)
class InstalledPackage:
    name: str
    version: str
    title: str
    canonical: str | None
    fhir_versions: tuple[str, ...]
    dependencies: dict[str, str]
    installed: str  # when, an R4 instant
    examples: bool
    resources: tuple[InstalledResource, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.name}#{self.version}"

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["fhir_versions"] = list(self.fhir_versions)
        value["resources"] = [
            {k: v for k, v in asdict(r).items() if v is not None} for r in self.resources
        ]
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> InstalledPackage:
        return cls(
            name=str(value["name"]),
            version=str(value["version"]),
            title=str(value.get("title", "")),
            canonical=value.get("canonical"),
            fhir_versions=tuple(value.get("fhir_versions", ())),
            dependencies=dict(value.get("dependencies", {})),
            installed=str(value.get("installed", "")),
            examples=bool(value.get("examples", False)),
            resources=tuple(InstalledResource(**r) for r in value.get("resources", ())),
        )


class InstalledPackages:
    """Installed package records over a record store."""

    def __init__(self, records: RecordStore) -> None:
        self._records = records

    async def get(self, name: str, version: str) -> InstalledPackage | None:
        found = await self._records.get_record(KIND, f"{name}#{version}")
        return InstalledPackage.from_json(found.value) if found is not None else None

    async def all(self) -> list[InstalledPackage]:
        """Every installed package version, in ``name#version`` order."""
        found: list[InstalledPackage] = []
        after: str | None = None
        while True:
            page = await self._records.records(KIND, after_key=after, limit=PAGE)
            found += [InstalledPackage.from_json(r.value) for r in page]
            if len(page) < PAGE:
                return found
            after = page[-1].key

    async def versions(self) -> dict[str, list[str]]:
        """Package name -> the versions installed."""
        versions: dict[str, list[str]] = {}
        for package in await self.all():
            versions.setdefault(package.name, []).append(package.version)
        return versions

    async def named(self, name: str) -> list[InstalledPackage]:
        """The installed versions of ``name`` (or the one ``name#version`` names)."""
        if "#" in name:
            package, _, version = name.partition("#")
            found = await self.get(package, version)
            return [found] if found is not None else []
        return [p for p in await self.all() if p.name == name]

    async def save(self, package: InstalledPackage) -> None:
        await self._records.put_record(KIND, package.key, package.to_json())


def merged(
    earlier: Sequence[InstalledResource], now: Sequence[InstalledResource]
) -> tuple[InstalledResource, ...]:
    """The resources of an earlier install of the same package and of this one (a re-install
    with ``--examples`` adds them; one without leaves the examples installed before listed)."""
    seen = {r.reference: r for r in earlier}
    seen.update({r.reference: r for r in now})
    return tuple(seen.values())
