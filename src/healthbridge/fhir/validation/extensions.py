"""Extensions checked against their definitions: https://hl7.org/fhir/R4/extensibility.html.

Every ``extension`` and ``modifierExtension`` in the resource (``_x`` primitive siblings
included) is looked up by its ``url``: a known definition is applied as a profile on Extension
(value type, cardinality, nested extensions, fixed urls), and its ``context``
(https://hl7.org/fhir/R4/structuredefinition-definitions.html#StructureDefinition.context) must
admit the element that carries it. An unknown url is a warning, as in the reference validator:
the extension may come from a package the server does not hold. Nested extensions with relative
urls belong to their parent's definition and are checked through it.

The same pass checks UCUM unit codes (https://hl7.org/fhir/R4/datatypes.html#Quantity): a
Quantity with system ``http://unitsofmeasure.org`` must carry a valid UCUM code, when the caller
gave a ``units`` check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

from healthbridge.fhir.definitions import Definitions
from healthbridge.fhir.validation.elements import Profile
from healthbridge.fhir.validation.instance import Loc
from healthbridge.fhir.validation.profile_walk import Ctx, Run

UCUM: Final = "http://unitsofmeasure.org"
_QUANTITIES: Final = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)
_MAX_DEPTH: Final = 64


class Extensions(Protocol):
    """What this pass needs from the validator."""

    definitions: Definitions
    units: Callable[[str], bool] | None

    def compiled(self, url: str) -> Profile | None: ...

    def structure(self, url: str) -> dict[str, Any] | None: ...


def _contexts(definition: dict[str, Any]) -> list[tuple[str, str]]:
    raw = definition.get("context")
    return [
        (str(c.get("type")), str(c.get("expression")))
        for c in (raw if isinstance(raw, list) else ())
        if isinstance(c, dict)
    ]


class ExtensionPass:
    """Walks one resource, following element types through the R4 definitions."""

    def __init__(self, source: Extensions, run: Run, ctx: Ctx) -> None:
        self.source = source
        self.defs = source.definitions
        self.run = run
        self.ctx = ctx
        self._keys: dict[str, dict[str, tuple[str, str]]] = {}

    def keys(self, path: str) -> dict[str, tuple[str, str]]:
        """JSON property -> (element path, type code) for the children of ``path``."""
        found = self._keys.get(path)
        if found is None:
            found = {}
            for element in self.defs.children(path).values():
                for key, type_ref in element.json_names:
                    code = type_ref.code or (element.content_reference or "").lstrip("#")
                    found[key] = (element.path, code)
            self._keys[path] = found
        return found

    def resource(self, value: dict[str, Any], loc: Loc, depth: int = 0) -> None:
        rtype = value.get("resourceType")
        if isinstance(rtype, str) and self.defs.is_resource_type(rtype):
            self.obj(value, rtype, rtype, loc, depth)

    def obj(self, value: dict[str, Any], path: str, type_code: str, loc: Loc, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if type_code in _QUANTITIES:
            self.unit(value, loc)
        keys = self.keys(path if self.defs.children(path) else type_code)
        for key, child in value.items():
            if key in ("extension", "modifierExtension") and isinstance(child, list):
                for index, ext in enumerate(child):
                    self.extension(ext, path, type_code, (loc, key, index), depth)
                continue
            plain = key.removeprefix("_")
            element = keys.get(plain)
            if element is None:
                continue
            element_path, code = element
            segment = self._segment(plain, element_path, code)
            self.values(child, element_path, code, loc, segment, depth)

    @staticmethod
    def _segment(key: str, element_path: str, code: str) -> str:
        name = element_path.rsplit(".", 1)[-1]
        return f"{name[:-3]}.ofType({code})" if name.endswith("[x]") else name

    def values(
        self, child: Any, element_path: str, code: str, loc: Loc, segment: str, depth: int
    ) -> None:
        items = child if isinstance(child, list) else [child]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            here: Loc = (loc, segment, index if isinstance(child, list) else -1)
            if "resourceType" in item:
                self.resource(item, here, depth + 1)
            else:
                self.obj(item, element_path, code, here, depth + 1)

    def extension(self, ext: Any, path: str, type_code: str, loc: Loc, depth: int) -> None:
        if not isinstance(ext, dict):
            return
        url = ext.get("url")
        nested = ext.get("extension")
        if isinstance(url, str) and ":" in url:
            self.known(ext, url, path, type_code, loc)
        if isinstance(nested, list):
            for index, inner in enumerate(nested):
                self.extension(inner, "Extension", "Extension", (loc, "extension", index), depth)
        for key, value in ext.items():
            if key.startswith("value") and isinstance(value, dict):
                code = key[5:]
                self.obj(value, code, code, (loc, f"value.ofType({code})", -1), depth + 1)

    def known(self, ext: dict[str, Any], url: str, path: str, type_code: str, loc: Loc) -> None:
        definition = self.source.structure(url)
        if definition is None:
            message = f"extension {url} is unknown: its content is not checked"
            self.run.report("warning", "not-found", message, loc)
            return
        if definition.get("type") != "Extension":
            message = f"{url} is a {definition.get('type')} definition, not an extension"
            self.run.report("error", "invalid", message, loc)
            return
        self.context(definition, url, path, type_code, loc)
        profile = self.source.compiled(url)
        if profile is not None:
            self.run.issues.extend(self.run.against(ext, loc, self.ctx, profile))

    def context(
        self, definition: dict[str, Any], url: str, path: str, type_code: str, loc: Loc
    ) -> None:
        contexts = _contexts(definition)
        if not contexts:
            return
        admitted = self.admitted(path, type_code)
        for kind, expression in contexts:
            if kind == "fhirpath" or (kind == "element" and expression in admitted):
                return
            if kind == "extension" and type_code == "Extension":
                return
        allowed = ", ".join(e for _, e in contexts)
        message = f"extension {url} is not allowed on {path} (its context: {allowed})"
        self.run.report("error", "structure", message, loc)

    def admitted(self, path: str, type_code: str) -> set[str]:
        """Context expressions that admit an element at ``path`` of type ``type_code``."""
        names = {path, type_code, "Element", "Base"}
        current: str | None = type_code
        while current is not None:
            names.add(current)
            type_def = self.defs.type_def(current)
            current = type_def.base if type_def is not None else None
        if self.defs.children(path) and path != type_code:
            names.add("BackboneElement")
        return names

    def unit(self, value: dict[str, Any], loc: Loc) -> None:
        units = self.source.units
        code = value.get("code")
        if units is None or value.get("system") != UCUM or not isinstance(code, str):
            return
        try:
            valid = units(code)
        except Exception:
            return
        if not valid:
            message = f"{code!r} is not a valid UCUM unit code ({UCUM})"
            self.run.report("error", "code-invalid", message, (loc, "code", -1))
