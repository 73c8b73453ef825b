"""Generate the compact R4 definitions shipped in ``healthbridge/fhir/definitions/data``.

Reads the official FHIR R4 4.0.1 packages (https://hl7.org/fhir/R4/downloads.html, FHIR package
format https://confluence.hl7.org/display/FHIR/NPM+Package+Specification) and writes five
gzip-compressed JSON files:

``structures.json.gz``
    every primitive type, complex datatype and resource of R4 (StructureDefinitions with
    ``derivation = specialization``, plus Element and Resource; logical models and profiles are
    left out) with the element tree of its snapshot: path, min, max, types (Reference/canonical
    target profiles reduced to type names), contentReference, bindings, isModifier, isSummary.
    Primitive types carry the regex of their ``value`` (https://hl7.org/fhir/R4/datatypes.html).
``valuesets.json.gz``
    the system|code sets of every value set that a *required* binding points to, from the
    expansions package, else by expanding the core CodeSystems for simple compose rules; the
    value sets that cannot be expanded are listed with the reason.
``terminology.json.gz``
    the CodeSystems (concepts with display, designations, properties and nesting; definitions
    and narrative left out), ValueSets (their ``compose``) and ConceptMaps of R4 core, for the
    terminology operations (https://hl7.org/fhir/R4/terminology-service.html).
``profiles.json.gz``
    the StructureDefinitions of R4 that constrain another (``derivation = constraint``: the
    vital signs profiles, lipid profile, shareable definitions and every core extension
    definition) for profile validation (https://hl7.org/fhir/R4/profiling.html), stripped to
    what the validator reads: snapshot elements with id, path, sliceName, min, max, base, type,
    fixed/pattern, binding strength and value set, constraints (key, severity, human,
    expression), slicing, mustSupport; the definition's url, version, type, baseDefinition,
    derivation, kind, abstract and context. Definitions, comments, mappings and narrative are
    left out.
``search.json.gz``
    the SearchParameters (https://hl7.org/fhir/R4/searchparameter.html; ``experimental`` ones are
    the spec's examples and are left out) and the CompartmentDefinitions
    (https://hl7.org/fhir/R4/compartmentdefinition.html).

Usage: ``python scripts/generate_definitions.py [--core TGZ] [--expansions TGZ] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "fhir-r4"
DEFAULT_CORE = SHARED / "hl7.fhir.r4.core-4.0.1.tgz"
DEFAULT_EXPANSIONS = SHARED / "hl7.fhir.r4.expansions-4.0.1.tgz"
DEFAULT_OUT = ROOT / "src" / "healthbridge" / "fhir" / "definitions" / "data"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
KINDS = ("primitive-type", "complex-type", "resource")
STRENGTHS = {"required": "required", "extensible": "extensible", "preferred": "preferred"}

Json = dict[str, Any]


def read_package(path: Path, prefixes: tuple[str, ...]) -> Iterator[Json]:
    """Yield the JSON resources of a FHIR package whose file names start with ``prefixes``."""
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if "/" in name or not name.endswith(".json") or not name.startswith(prefixes):
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                yield json.load(handle)


# -- structures ------------------------------------------------------------------------------


def is_base_structure(sd: Json) -> bool:
    if sd.get("kind") not in KINDS:
        return False
    return sd.get("derivation") == "specialization" or sd["id"] in ("Element", "Resource")


def type_name(type_json: Json, path: str, owner: Json) -> str:
    """The FHIR type of one ``ElementDefinition.type`` entry.

    System types (``http://hl7.org/fhirpath/System.String``) carry the FHIR type in an
    extension. R4 types ``Resource.id`` as System.String/string, but resource.html documents it
    as ``id`` and the ``id`` regex applies, so the top-level ``id`` of a resource becomes ``id``.
    """
    code: str = type_json["code"]
    if not code.startswith("http://hl7.org/fhirpath/"):
        return code
    if owner["kind"] == "resource" and path.count(".") == 1 and path.endswith(".id"):
        return "id"
    for ext in type_json.get("extension", ()):
        if ext["url"] == FHIR_TYPE_EXT:
            return str(ext["valueUrl"])
    return "string"


def type_entry(type_json: Json, path: str, owner: Json) -> str:
    """``code`` or ``code(Target1|Target2)`` for Reference/canonical with target profiles."""
    name = type_name(type_json, path, owner)
    targets = [t.removeprefix(SD_PREFIX) for t in type_json.get("targetProfile", ())]
    return f"{name}({'|'.join(targets)})" if targets else name


def element_entry(element: Json, owner: Json) -> Json:
    path = element["path"]
    out: Json = {"path": path, "min": element.get("min", 0), "max": element.get("max", "1")}
    types = [type_entry(t, path, owner) for t in element.get("type", ())]
    if types:
        out["types"] = types
    if "contentReference" in element:
        out["contentReference"] = element["contentReference"].lstrip("#")
    binding = element.get("binding") or {}
    if binding.get("strength") in STRENGTHS and binding.get("valueSet"):
        out["binding"] = [binding["strength"], binding["valueSet"].split("|")[0]]
    if element.get("isSummary"):
        out["summary"] = True
    if element.get("isModifier"):
        out["modifier"] = True
    return out


def primitive_regex(sd: Json) -> str | None:
    for element in sd["snapshot"]["element"]:
        if element["path"] == f"{sd['type']}.value":
            for type_json in element.get("type", ()):
                for ext in type_json.get("extension", ()):
                    if ext["url"] == REGEX_EXT:
                        return str(ext["valueString"])
    return None


def structure_entry(sd: Json) -> Json:
    name = sd["type"]
    out: Json = {"kind": sd["kind"], "abstract": bool(sd.get("abstract"))}
    if sd.get("baseDefinition"):
        out["base"] = sd["baseDefinition"].removeprefix(SD_PREFIX)
    primitive_value = f"{name}.value"
    out["elements"] = [
        element_entry(e, sd)
        for e in sd["snapshot"]["element"]
        if e["path"] != name
        and not (sd["kind"] == "primitive-type" and e["path"] == primitive_value)
    ]
    if sd["kind"] == "primitive-type":
        out["regex"] = primitive_regex(sd)
    return out


def build_structures(sds: Iterable[Json]) -> Json:
    types = {sd["type"]: structure_entry(sd) for sd in sds if is_base_structure(sd)}
    return {"fhirVersion": "4.0.1", "types": dict(sorted(types.items()))}


def required_value_sets(structures: Json) -> set[str]:
    return {
        element["binding"][1]
        for entry in structures["types"].values()
        for element in entry["elements"]
        if element.get("binding", ("",))[0] == "required"
    }


# -- value sets ------------------------------------------------------------------------------

INCOMPLETE_EXTS = {
    "http://hl7.org/fhir/StructureDefinition/valueset-toocostly": "the expansion is too costly",
    "http://hl7.org/fhir/StructureDefinition/valueset-unclosed": "the value set is unclosed",
}


class Unexpandable(Exception):
    """A value set whose complete code list cannot be computed from the packages."""


def flatten_contains(contains: Iterable[Json]) -> Iterator[tuple[str, str]]:
    for item in contains:
        if "code" in item and "system" in item and not item.get("abstract"):
            yield item["system"], item["code"]
        yield from flatten_contains(item.get("contains", ()))


def from_expansion(value_set: Json) -> set[tuple[str, str]]:
    expansion = value_set["expansion"]
    for ext in expansion.get("extension", ()):
        if ext["url"] in INCOMPLETE_EXTS:
            raise Unexpandable(INCOMPLETE_EXTS[ext["url"]] + " (grammar-based code system)")
    codes = set(flatten_contains(expansion.get("contains", ())))
    if not codes:
        raise Unexpandable("the expansion is empty")
    return codes


def code_system_codes(code_system: Json) -> set[str]:
    if code_system.get("content") != "complete":
        raise Unexpandable(f"code system {code_system['url']} is not complete in the package")

    def walk(concepts: Iterable[Json]) -> Iterator[str]:
        for concept in concepts:
            yield concept["code"]
            yield from walk(concept.get("concept", ()))

    return set(walk(code_system.get("concept", ())))


class Expander:
    """Compose-based expansion for value sets missing from the expansions package."""

    def __init__(self, code_systems: dict[str, Json], value_sets: dict[str, Json]) -> None:
        self.code_systems = code_systems
        self.value_sets = value_sets

    def expand(self, url: str, seen: frozenset[str] = frozenset()) -> set[tuple[str, str]]:
        if url in seen or url not in self.value_sets:
            raise Unexpandable(f"value set {url} is not in the core package")
        compose = self.value_sets[url].get("compose")
        if not compose:
            raise Unexpandable(f"value set {url} has no compose")
        codes: set[tuple[str, str]] = set()
        for include in compose.get("include", ()):
            codes |= self.rule(include, seen | {url})
        for exclude in compose.get("exclude", ()):
            codes -= self.rule(exclude, seen | {url})
        return codes

    def rule(self, rule: Json, seen: frozenset[str]) -> set[tuple[str, str]]:
        if rule.get("filter"):
            raise Unexpandable("compose uses filters")
        codes: set[tuple[str, str]] | None = None
        for vs_url in rule.get("valueSet", ()):
            nested = self.expand(vs_url.split("|")[0], seen)
            codes = nested if codes is None else codes & nested
        system = rule.get("system")
        if system:
            if rule.get("concept"):
                own = {(system, c["code"]) for c in rule["concept"]}
            elif system in self.code_systems:
                own = {(system, c) for c in code_system_codes(self.code_systems[system])}
            else:
                raise Unexpandable(f"code system {system} is not in the core package")
            codes = own if codes is None else codes & own
        return codes or set()


def group_by_system(codes: set[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for system, code in sorted(codes):
        grouped.setdefault(system, []).append(code)
    return grouped


def build_value_sets(urls: set[str], expansions: dict[str, Json], expander: Expander) -> Json:
    value_sets: Json = {}
    unexpanded: dict[str, str] = {}
    for url in sorted(urls):
        try:
            in_package = url in expansions
            codes = from_expansion(expansions[url]) if in_package else expander.expand(url)
            value_sets[url] = group_by_system(codes)
        except Unexpandable as exc:
            unexpanded[url] = str(exc)
    return {"valueSets": value_sets, "unexpanded": unexpanded}


# -- search parameters and compartments ------------------------------------------------------


def search_entry(sp: Json) -> Json:
    out: Json = {"url": sp["url"], "code": sp["code"], "type": sp["type"], "base": sp["base"]}
    for key in ("expression", "target", "modifier", "comparator", "chain"):
        if sp.get(key):
            out[key] = sp[key]
    for key in ("multipleOr", "multipleAnd"):
        if key in sp:
            out[key] = sp[key]
    if sp.get("component"):
        out["component"] = [
            {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
        ]
    return out


def compartment_entry(definition: Json) -> dict[str, list[str]]:
    return {r["code"]: r["param"] for r in definition.get("resource", ()) if r.get("param")}


def build_search(sps: Iterable[Json], compartments: Iterable[Json]) -> Json:
    params = [search_entry(sp) for sp in sps if sp.get("base") and not sp.get("experimental")]
    params.sort(key=lambda p: p["url"])
    by_code = {  # the package also holds an example definition with code Device: skip it
        c["code"]: compartment_entry(c)
        for c in compartments
        if c["id"].lower() == c["code"].lower()
    }
    return {"searchParameters": params, "compartments": dict(sorted(by_code.items()))}


# -- terminology -------------------------------------------------------------------------------

TERMINOLOGY_KEEP = {
    "CodeSystem": (
        "resourceType", "id", "url", "version", "name", "title", "status", "caseSensitive",
        "valueSet", "hierarchyMeaning", "compositional", "content", "count", "property",
        "concept", "publisher",
    ),
    "ValueSet": ("resourceType", "id", "url", "version", "name", "title", "status", "compose"),
    "ConceptMap": (
        "resourceType", "id", "url", "version", "name", "title", "status", "sourceUri",
        "sourceCanonical", "targetUri", "targetCanonical", "group",
    ),
}  # fmt: skip
CONCEPT_KEEP = ("code", "display", "designation", "property", "concept")


def compact_concepts(concepts: Iterable[Json]) -> list[Json]:
    out = []
    for concept in concepts:
        kept = {k: concept[k] for k in CONCEPT_KEEP if k in concept}
        if "concept" in kept:
            kept["concept"] = compact_concepts(kept["concept"])
        out.append(kept)
    return out


def compact_terminology(resource: Json) -> Json:
    kept = {k: resource[k] for k in TERMINOLOGY_KEEP[resource["resourceType"]] if k in resource}
    if "concept" in kept:
        kept["concept"] = compact_concepts(kept["concept"])
    return kept


def build_terminology(resources: dict[str, list[Json]]) -> Json:
    return {
        key: [compact_terminology(r) for r in sorted(resources[kind], key=lambda r: r["url"])]
        for key, kind in (
            ("codeSystems", "CodeSystem"),
            ("valueSets", "ValueSet"),
            ("conceptMaps", "ConceptMap"),
        )
    }


# -- profiles and extension definitions --------------------------------------------------------

PROFILE_KEEP = (
    "resourceType", "id", "url", "version", "name", "status", "fhirVersion", "kind", "abstract",
    "context", "contextInvariant", "type", "baseDefinition", "derivation",
)  # fmt: skip
ELEMENT_KEEP = (
    "id", "path", "sliceName", "min", "max", "base", "contentReference", "mustSupport",
    "isModifier", "maxLength", "slicing",
)  # fmt: skip
ELEMENT_PREFIXES = ("fixed", "pattern", "minValue", "maxValue")
CONSTRAINT_KEEP = ("key", "severity", "human", "expression")
BASE_INVARIANTS = ("ele-1", "ext-1")
"""On nearly every element; the base validator enforces them and the profile validator skips
them, so they are left out (a third of the file)."""


def compact_type(type_json: Json) -> Json:
    out: Json = {k: type_json[k] for k in ("code", "profile", "targetProfile") if k in type_json}
    kept = [e for e in type_json.get("extension", ()) if e.get("url") == FHIR_TYPE_EXT]
    if kept:
        out["extension"] = kept
    return out


def compact_element(element: Json) -> Json:
    out = {k: element[k] for k in ELEMENT_KEEP if k in element}
    out |= {k: v for k, v in element.items() if k.startswith(ELEMENT_PREFIXES)}
    if element.get("type"):
        out["type"] = [compact_type(t) for t in element["type"]]
    binding = element.get("binding") or {}
    if binding.get("valueSet"):
        out["binding"] = {"strength": binding["strength"], "valueSet": binding["valueSet"]}
    constraints = [
        {k: c[k] for k in CONSTRAINT_KEEP if k in c}
        for c in element.get("constraint", ())
        if c.get("expression") and c.get("key") not in BASE_INVARIANTS
    ]
    if constraints:
        out["constraint"] = constraints
    return out


def compact_profile(sd: Json) -> Json:
    """A constraining StructureDefinition with what profile validation reads; the differential
    only when there is no snapshot (the validator generates one from it)."""
    out = {k: sd[k] for k in PROFILE_KEEP if k in sd}
    part = "snapshot" if sd.get("snapshot") else "differential"
    out[part] = {"element": [compact_element(e) for e in sd[part]["element"]]}
    return out


def build_profiles(sds: Iterable[Json]) -> Json:
    kept = [compact_profile(sd) for sd in sds if sd.get("derivation") == "constraint"]
    return {"fhirVersion": "4.0.1", "structureDefinitions": sorted(kept, key=lambda p: p["url"])}


# -- driver ----------------------------------------------------------------------------------


def build(core: Path, expansions: Path) -> dict[str, Json]:
    """All generated payloads, keyed by the file name they are written to."""
    resources: dict[str, list[Json]] = {}
    prefixes = ("StructureDefinition-", "ValueSet-", "CodeSystem-", "SearchParameter-")
    extra = ("CompartmentDefinition-", "ConceptMap-")
    for resource in read_package(core, (*prefixes, *extra)):
        resources.setdefault(resource["resourceType"], []).append(resource)
    structures = build_structures(resources["StructureDefinition"])
    expanded = {vs["url"]: vs for vs in read_package(expansions, ("ValueSet-",))}
    expander = Expander(
        {cs["url"]: cs for cs in resources["CodeSystem"]},
        {vs["url"]: vs for vs in resources["ValueSet"]},
    )
    value_sets = build_value_sets(required_value_sets(structures), expanded, expander)
    search = build_search(resources["SearchParameter"], resources["CompartmentDefinition"])
    return {
        "structures.json.gz": structures,
        "valuesets.json.gz": value_sets,
        "search.json.gz": search,
        "terminology.json.gz": build_terminology(resources),
        "profiles.json.gz": build_profiles(resources["StructureDefinition"]),
    }


def encode(payload: Json) -> bytes:
    """Deterministic bytes: compact JSON, gzip without a timestamp."""
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=Path, default=DEFAULT_CORE)
    parser.add_argument("--expansions", type=Path, default=DEFAULT_EXPANSIONS)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, payload in build(args.core, args.expansions).items():
        data = encode(payload)
        (args.out / name).write_bytes(data)
        print(f"wrote {args.out / name} ({len(data):,} bytes)")
    unexpanded = payload_unexpanded(args.out)
    for url, reason in unexpanded.items():
        print(f"not expanded: {url}: {reason}")


def payload_unexpanded(out: Path) -> dict[str, str]:
    data = json.loads(gzip.decompress((out / "valuesets.json.gz").read_bytes()))
    return dict(data["unexpanded"])


if __name__ == "__main__":
    main()
