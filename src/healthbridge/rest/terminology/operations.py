"""The terminology operations over HTTP: https://hl7.org/fhir/R4/terminology-service.html.

``CodeSystem/$lookup``, ``CodeSystem/$subsumes``, ``CodeSystem/$validate-code``,
``ValueSet/$validate-code``, ``ValueSet/$expand`` and ``ConceptMap/$translate``, at type and
instance level, by GET (query parameters) or POST (a Parameters resource); registered in the
operation registry by :func:`operations`. The work is done by :class:`TerminologyService` over
every source of codes (:mod:`.sources`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from healthbridge.fhir import jsonformat
from healthbridge.fhir.errors import InvalidRequest, NotFound
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.terminology.core import CoreTerminology
from healthbridge.fhir.terminology.parameters import Inputs
from healthbridge.fhir.types import Resource
from healthbridge.rest.context import RestContext
from healthbridge.rest.http import read_resource, resource_json
from healthbridge.rest.operations.registry import Level, Operation
from healthbridge.rest.terminology.expand import Expander, ExpandOptions
from healthbridge.rest.terminology.lookup import concept_of, lookup, subsumes
from healthbridge.rest.terminology.sources import Resolver, Source
from healthbridge.rest.terminology.translate import translate_request
from healthbridge.rest.terminology.validate import Coded, Verdict, judge, validate_code
from healthbridge.store.repository import Repository

HL7 = "http://hl7.org/fhir/OperationDefinition/"


class TerminologyService:
    """One per process: resolves code systems, value sets and concept maps for every request
    (through the repository without per-request access checks: terminology is not patient
    data; instance-level operations read their instance with the request's checks)."""

    def __init__(
        self, repository: Repository, parser: SearchParser, core: CoreTerminology | None = None
    ) -> None:
        self.resolver = Resolver(repository, parser, core)
        self.expander = Expander(self.resolver)


def required(name: str) -> InvalidRequest:
    return InvalidRequest(f"Parameter {name!r} is required", code="required", expression=name)


async def inputs_of(ctx: RestContext, request: Request) -> Inputs:
    if request.method == "POST":
        return Inputs.from_parameters(await read_resource(request, ctx.limits))
    return Inputs.from_query(request.query_params.multi_items())


async def instance_of(ctx: RestContext, request: Request) -> Resource | None:
    id: str | None = request.path_params.get("id")
    if id is None:
        return None
    stored = await ctx.service.read(request.path_params["type"], id)
    resource: Resource = jsonformat.loads(stored.content)
    return resource


def codings(inputs: Inputs, system_param: str = "system") -> list[Coded]:
    """The codings to check: ``coding``, ``codeableConcept`` or ``code`` (+ ``system``)."""
    version = inputs.text("systemVersion") or inputs.text("version")
    coding = inputs.coding("coding")
    if coding is not None:
        return [_coded(coding, version)]
    concept = inputs.codings("codeableConcept")
    if concept is not None:
        return [_coded(c, version) for c in concept if isinstance(c.get("code"), str)]
    code = inputs.text("code")
    if code is None:
        raise required("code")
    return [Coded(inputs.text(system_param), code, version, inputs.text("display"))]


def _coded(coding: dict[str, Any], version: str | None) -> Coded:
    return Coded(coding.get("system"), coding["code"], coding.get("version") or version,
                 coding.get("display"))  # fmt: skip


class Handlers:
    def __init__(self, service: TerminologyService) -> None:
        self.service = service
        self.resolver = service.resolver

    async def _code_system(
        self, ctx: RestContext, request: Request, inputs: Inputs, url_param: str
    ) -> Source:
        instance = await instance_of(ctx, request)
        inline = inputs.resource("codeSystem", "CodeSystem")
        if inline is not None:
            return self.resolver.indexed(inline, "request")
        # CodeSystem/$validate-code names the system `url` (R4); clients often send `system`
        # as for $lookup, which this accepts too.
        named = inputs.text(url_param) or inputs.text("system")
        url = str(instance.get("url") or "") if instance else named
        version = instance.get("version") if instance else inputs.text("version")
        if not url:
            coding = inputs.coding("coding") or inputs.coding("codingA")
            url = coding.get("system") if coding else None
        if not url:
            raise required(url_param)
        source = await self.resolver.code_system(url, version)
        if source is None and instance is not None:
            source = self.resolver.indexed(instance)
        if source is None:
            raise NotFound(f"The code system {url} is not known to this server", code="not-found")
        return source

    async def lookup(self, ctx: RestContext, request: Request) -> Response:
        inputs = await inputs_of(ctx, request)
        coding = inputs.coding("coding")
        code = coding["code"] if coding else inputs.text("code")
        if code is None:
            raise required("code")
        source = await self._code_system(ctx, request, inputs, "system")
        concept = await concept_of(source, code)
        wanted = [str(p) for p in inputs.all("property")]
        answer = await lookup(source, concept, wanted, inputs.text("displayLanguage"))
        return resource_json(answer, request)

    async def subsumes(self, ctx: RestContext, request: Request) -> Response:
        inputs = await inputs_of(ctx, request)
        coding_a, coding_b = inputs.coding("codingA"), inputs.coding("codingB")
        code_a = coding_a["code"] if coding_a else inputs.text("codeA")
        code_b = coding_b["code"] if coding_b else inputs.text("codeB")
        if code_a is None or code_b is None:
            raise required("codeA" if code_a is None else "codeB")
        if coding_a and coding_b and coding_a.get("system") != coding_b.get("system"):
            raise InvalidRequest("codingA and codingB must be of the same system", code="value")
        source = await self._code_system(ctx, request, inputs, "system")
        return resource_json(await subsumes(source, code_a, code_b), request)

    async def validate_code(self, ctx: RestContext, request: Request) -> Response:
        inputs = await inputs_of(ctx, request)
        abstract_ok = inputs.flag("abstract") is True
        if request.path_params["type"] == "CodeSystem":
            source = await self._code_system(ctx, request, inputs, "url")
            verdicts = []
            for given in codings(inputs, "url"):
                coded = Coded(source.info.url, given.code, given.version, given.display)
                concept = (await source.concepts([coded.code])).get(coded.code)
                verdicts.append(judge(source, concept, coded, abstract_ok))
        else:
            value_set = await self._value_set(ctx, request, inputs)
            verdicts = [
                await validate_code(self.resolver, coded, value_set, abstract_ok)
                for coded in codings(inputs)
            ]
        return resource_json(_combined(verdicts).parameters(), request)

    async def _value_set(self, ctx: RestContext, request: Request, inputs: Inputs) -> Resource:
        instance = await instance_of(ctx, request)
        if instance is not None:
            return instance
        inline = inputs.resource("valueSet", "ValueSet")
        if inline is not None:
            return inline
        url = inputs.text("url")
        if url is None:
            raise required("url")
        version = inputs.text("valueSetVersion")
        found = await self.resolver.value_set(f"{url}|{version}" if version else url)
        if found is None:
            raise NotFound(f"The value set {url} is not known to this server", code="not-found")
        return found

    async def expand(self, ctx: RestContext, request: Request) -> Response:
        inputs = await inputs_of(ctx, request)
        value_set = await self._value_set(ctx, request, inputs)
        options = ExpandOptions(
            text=inputs.text("filter"),
            count=inputs.number("count"),
            offset=inputs.number("offset") or 0,
            include_designations=inputs.flag("includeDesignations") is True,
            active_only=inputs.flag("activeOnly"),
        )
        return resource_json(await self.service.expander.expand(value_set, options), request)

    async def translate(self, ctx: RestContext, request: Request) -> Response:
        inputs = await inputs_of(ctx, request)
        instance = await instance_of(ctx, request)
        answer = await translate_request(self.resolver, inputs, instance)
        return resource_json(answer, request)


def _combined(verdicts: list[Verdict]) -> Verdict:
    """A CodeableConcept is valid when one of its codings is."""
    if not verdicts:
        return Verdict(False, ("No coding to validate",))
    good = [v for v in verdicts if v.result]
    chosen = good[0] if good else verdicts[0]
    messages = tuple(m for v in verdicts for m in v.messages) if not good else chosen.messages
    return Verdict(chosen.result, messages, chosen.display)


def operations(service: TerminologyService) -> list[Operation]:
    """The terminology operations, for the app's operation registry."""
    handlers = Handlers(service)
    levels: frozenset[Level] = frozenset({"type", "instance"})
    methods = frozenset({"GET", "POST"})

    def op(name: str, definition: str, handler: Any, *types: str) -> Operation:
        return Operation(name, HL7 + definition, levels, methods, handler, frozenset(types))

    return [
        op("lookup", "CodeSystem-lookup", handlers.lookup, "CodeSystem"),
        op("subsumes", "CodeSystem-subsumes", handlers.subsumes, "CodeSystem"),
        op(
            "validate-code",
            "ValueSet-validate-code",
            handlers.validate_code,
            "CodeSystem",
            "ValueSet",
        ),
        op("expand", "ValueSet-expand", handlers.expand, "ValueSet"),
        op("translate", "ConceptMap-translate", handlers.translate, "ConceptMap"),
    ]
