"""``GET [base]/metadata?mode=terminology``: the TerminologyCapabilities resource,
https://hl7.org/fhir/R4/terminologycapabilities.html (and http.html#capabilities).

Lists the code systems the server answers for (loaded into the terminology store, CodeSystem
resources stored on the server with content, then the R4 core ones shipped with it) with
their versions, properties and filters, the ``$expand`` parameters, and that ``$validate-code``
and ``$translate`` are offered (no closure tables).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.meta import format_instant
from healthbridge.fhir.terminology.code_system import code_system_info
from healthbridge.fhir.terminology.concepts import CodeSystemInfo
from healthbridge.rest.http import resource_json
from healthbridge.rest.terminology.operations import TerminologyService
from healthbridge.store.terminology import FilterOp

HIERARCHY_OPS: list[FilterOp] = ["is-a", "descendent-of", "is-not-a", "generalizes", "=", "in",
                                 "not-in", "regex"]  # fmt: skip
PROPERTY_OPS: list[FilterOp] = ["=", "in", "not-in", "regex", "exists"]
MAX_STORED = 500
EXPAND_PARAMETERS = ("filter", "count", "offset", "includeDesignations", "activeOnly")


def _code_system(info: CodeSystemInfo, default: bool) -> dict[str, Any]:
    version: dict[str, Any] = {"isDefault": default}
    if info.version:
        version = {"code": info.version, **version}
    filters = [{"code": "concept", "op": HIERARCHY_OPS}]
    filters += [{"code": p.code, "op": PROPERTY_OPS} for p in info.properties]
    version["filter"] = filters
    if info.properties:
        version["property"] = [p.code for p in info.properties]
    return {"uri": info.url, "version": [version]}


class TerminologyCapabilities:
    def __init__(self, service: TerminologyService, software_version: str) -> None:
        self.service = service
        self.software_version = software_version

    async def statement(self) -> dict[str, Any]:
        resolver = self.service.resolver
        loaded = await resolver.repository.terminology.code_systems()
        systems: dict[str, dict[str, Any]] = {}
        for info in loaded:
            entry = _code_system(info, False)
            if info.url in systems:
                systems[info.url]["version"].extend(entry["version"])
            else:
                systems[info.url] = entry
        for entry in systems.values():
            entry["version"][-1]["isDefault"] = True  # the newest loaded answers by default
        for info in await self._stored():
            if info.url not in systems:
                systems[info.url] = _code_system(info, True)
        for url in sorted(resolver.core.code_systems):
            if url not in systems:
                info = code_system_info(resolver.core.code_systems[url], "core")
                systems[url] = _code_system(info, True)
        return {
            "resourceType": "TerminologyCapabilities",
            "status": "active",
            "date": format_instant(datetime.now(UTC)),
            "publisher": "HealthBridge",
            "kind": "instance",
            "software": {"name": "HealthBridge", "version": self.software_version},
            "codeSearch": "all",
            "codeSystem": list(systems.values()),
            "expansion": {
                "hierarchical": False,
                "paging": True,
                "incomplete": False,
                "parameter": [{"name": name} for name in EXPAND_PARAMETERS],
                "textFilter": "Every word of filter starts a word of the display or a "
                "designation (case-insensitive)",
            },
            "validateCode": {"translations": False},
            "translation": {"needsMap": False},
            "closure": {"translation": False},
        }

    async def _stored(self) -> list[CodeSystemInfo]:
        """CodeSystem resources stored on the server (packages, uploads) that hold concepts;
        the first :data:`MAX_STORED` of them."""
        resolver = self.service.resolver
        query = resolver.parser.parse("CodeSystem", [("_count", str(MAX_STORED))])
        page = await resolver.repository.search(query)
        found = []
        for match in page.matches:
            resource = jsonformat.loads(match.content)
            if resource.get("url") and resource.get("content") not in ("not-present", None):
                found.append(code_system_info(resource, "resource"))
        return found

    async def handle(self, request: Request) -> Response:
        return resource_json(await self.statement(), request)
