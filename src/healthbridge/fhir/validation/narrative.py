"""Narrative XHTML rules: https://hl7.org/fhir/R4/narrative.html#xhtml (invariants txt-1, txt-2).

``Narrative.div`` must be well-formed XHTML whose root is ``<div>`` in the XHTML namespace, using
only the basic HTML 4.0 formatting elements (chapters 7-11 except 9.4, and 12), ``<a>`` and
images; it must have some non-whitespace content. For safety this module also refuses what
narrative.html forbids (scripts, forms, frames, iframes, objects, event attributes) and anything
that could execute in a browser: ``on*`` attributes, ``style`` with ``expression(`` or a
``javascript:`` URL, and ``javascript:``/``vbscript:``/``data:`` URLs in ``href``/``src``.

One departure from a blanket ``data:`` ban: ``<img src="data:image/png|gif|jpeg|webp;...">`` is
accepted, because raster images cannot run script and the spec's own StructureDefinition
narratives embed their icons that way. ``data:`` in ``href`` and any other media type
(``image/svg+xml``, ``text/html``) are refused.

Parsing uses the stdlib expat parser through :mod:`xml.etree.ElementTree`; any markup
declaration (``<!DOCTYPE``, ``<!ENTITY``, ...) is refused *before* parsing, so no DTD, internal
entity or external entity is ever processed. HTML named entities such as ``&nbsp;`` are not
XML and are refused (narrative.html: use the Unicode character or ``&#160;``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from typing import Final

XHTML_NS: Final = "http://www.w3.org/1999/xhtml"
_XML_NS: Final = "http://www.w3.org/XML/1998/namespace"

# HTML 4.0 chapters 7-11 (without 9.4 ins/del) and 12, plus img, map and area (txt-1).
_ELEMENT_NAMES = (
    "p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite "
    "blockquote hr address bdo kbd samp sub sup ul ol li dl dt dd pre table caption colgroup "
    "col thead tr tfoot tbody th td code img map area"
)
_ATTRIBUTE_NAMES = (
    "title style class id lang dir accesskey tabindex href name rel rev hreflang charset type "
    "shape coords src alt longdesc height width usemap ismap nohref border cellpadding "
    "cellspacing frame rules summary span align valign char charoff abbr axis headers scope "
    "rowspan colspan start value compact cite datetime clear noshade size"
)
ALLOWED_ELEMENTS: Final = frozenset(_ELEMENT_NAMES.split())
ALLOWED_ATTRIBUTES: Final = frozenset(_ATTRIBUTE_NAMES.split())
_DECLARATION = re.compile(r"<!(?!--|\[CDATA\[)")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_SAFE_IMAGE_DATA = re.compile(r"^data:image/(?:png|gif|jpeg|jpg|webp|bmp)[;,]")
_STRIP = re.compile(r"[\x00-\x20\x7f]+")
_BAD_STYLE = re.compile(r"expression\s*\(|javascript:|behavior\s*:|-moz-binding", re.IGNORECASE)


def _url_problem(element: str, attribute: str, value: str) -> str | None:
    compact = _STRIP.sub("", value).lower()
    match = _SCHEME.match(compact)
    if match is None:
        return None
    scheme = match.group(1)
    if scheme in ("javascript", "vbscript"):
        return f"<{element} {attribute}> uses a {scheme}: URL, which could run script"
    if scheme == "data" and not (element == "img" and _SAFE_IMAGE_DATA.match(compact)):
        return (
            f"<{element} {attribute}> uses a data: URL; only <img src> with a raster image "
            "(png, gif, jpeg, webp) may be inline"
        )
    return None


def _attribute_problem(element: str, name: str, value: str) -> str | None:
    if name.startswith(f"{{{_XML_NS}}}"):
        local = name.split("}")[1]
        return None if local == "lang" else f"attribute xml:{local} is not allowed in narrative"
    if name.lower().startswith("on"):
        return f"event-handler attribute {name} on <{element}> is not allowed (no scripts)"
    if name not in ALLOWED_ATTRIBUTES:
        return f"attribute {name!r} on <{element}> is not allowed in narrative XHTML"
    if name == "style" and _BAD_STYLE.search(value):
        return f"style on <{element}> contains a script expression"
    if name in ("href", "src", "longdesc", "cite", "usemap"):
        return _url_problem(element, name, value)
    return None


def _element_problems(root: ET.Element) -> str | None:
    for node in root.iter():
        tag = node.tag
        if not isinstance(tag, str):  # comments and processing instructions
            continue
        namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        if namespace != XHTML_NS:
            return f"element <{local}> is not in the XHTML namespace {XHTML_NS}"
        if local not in ALLOWED_ELEMENTS:
            return f"element <{local}> is not allowed in narrative (txt-1: basic HTML only)"
        for name, value in node.attrib.items():
            problem = _attribute_problem(local, name, value)
            if problem:
                return problem
    return None


@lru_cache(maxsize=2048)
def narrative_problem(div: str) -> tuple[str, str] | None:
    """``(invariant key, message)`` when ``div`` breaks txt-1/txt-2, else None.

    Cached: the function is pure and servers see the same generated narratives many times.
    """
    if _DECLARATION.search(div):
        return (
            "txt-1",
            "markup declarations (DOCTYPE, ENTITY, ...) are not allowed in narrative XHTML",
        )
    try:
        # Safe: declarations were refused above, so expat sees no DTD and expands no entity.
        root = ET.fromstring(div)  # noqa: S314
    except ET.ParseError as exc:
        return "txt-1", f"the div is not well-formed XHTML: {exc}"
    if root.tag != f"{{{XHTML_NS}}}div":
        return "txt-1", f'the root must be <div xmlns="{XHTML_NS}">, got {root.tag!r}'
    problem = _element_problems(root)
    if problem:
        return "txt-1", problem
    if not "".join(root.itertext()).strip():
        return "txt-2", "the narrative SHALL have some non-whitespace content"
    return None
