"""FHIR NPM packages: installing implementation guides' profiles, terminology and examples.

https://hl7.org/fhir/packages.html. ``healthbridge packages install FILE.tgz`` (docs/packages.md)
reads a package safely (:mod:`.archive`, :mod:`.manifest`), chooses its conformance resources
and, on request, its examples (:mod:`.selection`), validates them, plans each one's identity
(:mod:`.plan`), writes them in one transaction through the FHIR service layer
(:mod:`.installer`), records the package (:mod:`.installed`) and makes its SearchParameters
searchable (:mod:`.searchable`).
"""

from __future__ import annotations

from healthbridge.packages.archive import ArchiveLimits, PackageError
from healthbridge.packages.installed import InstalledPackage, InstalledPackages
from healthbridge.packages.installer import (
    InstallOptions,
    InstallResult,
    Invalid,
    InvalidPackage,
    PackageInstaller,
)

__all__ = [
    "ArchiveLimits",
    "InstallOptions",
    "InstallResult",
    "InstalledPackage",
    "InstalledPackages",
    "Invalid",
    "InvalidPackage",
    "PackageError",
    "PackageInstaller",
]
