"""References inside a transaction Bundle: https://hl7.org/fhir/R4/http.html#trules and
https://hl7.org/fhir/R4/bundle.html#references.

* Placeholder identities: an entry whose ``fullUrl`` is a ``urn:uuid:`` or ``urn:oid:`` gets a
  real identity when the transaction runs, and "servers SHALL replace all matching links in the
  bundle, whether they are found in the resource ids, resource references, elements of type uri,
  url, oid, uuid, and <a href="" & <img src="" in the narrative". :func:`rewrite` does that for
  every string in a resource, at any depth (extensions and contained resources included).
* Conditional references (http.html#trules, "Conditional References"): a ``Reference.reference``
  of the form ``Patient?identifier=sys|v`` is a search the server resolves to exactly one
  resource. :func:`find_links` finds them (``Links.conditional``).

Pure functions over plain dicts; they change the resource in place (it belongs to the bundle
being processed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

_CONDITIONAL = re.compile(r"[A-Z][A-Za-z]{1,63}\?.+", re.DOTALL)
_NARRATIVE_LINK = re.compile(r"""\b(href|src)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE)


def is_conditional(reference: str) -> bool:
    """``Type?criteria`` (a conditional reference), as opposed to ``Type/id`` or a URL."""
    return _CONDITIONAL.fullmatch(reference) is not None


@dataclass(slots=True)
class Links:
    """Where a resource holds strings a transaction may replace (found in one pass):
    ``sites`` are (container, key or index, value) of strings equal to one of the targets or
    conditional references, ``narratives`` the (container, key) of narrative ``div``s."""

    sites: list[tuple[Any, Any, str]] = field(default_factory=list)
    narratives: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    maybe_conditional: list[str] = field(default_factory=list)

    @property
    def conditional(self) -> set[str]:
        """The conditional references among the sites."""
        return {value for value in self.maybe_conditional if is_conditional(value)}

    def rewrite(self, mapping: Mapping[str, str]) -> None:
        """Replace each site's value found in ``mapping`` (and such narrative links)."""
        if not mapping:
            return
        for container, key, value in self.sites:
            replaced = mapping.get(value)
            if replaced is not None:
                container[key] = replaced
        for holder, key in self.narratives:
            holder[key] = _rewrite_narrative(holder[key], mapping)


def find_links(
    resource: Any, targets: AbstractSet[str], lengths: AbstractSet[int] | None = None
) -> Links:
    """The strings of ``resource`` equal to one of ``targets`` (fullUrls of the Bundle), its
    conditional references and its narratives, at any depth. ``lengths`` (the lengths of the
    targets, computed once per Bundle) rules out most strings without hashing them."""
    links = Links()
    sites = links.sites
    if lengths is None:
        lengths = {len(target) for target in targets}
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if len(value) in lengths and value in targets:
                        sites.append((node, key, value))
                    elif key == "reference" and "?" in value:
                        sites.append((node, key, value))
                        links.maybe_conditional.append(value)
                    elif key == "div":
                        links.narratives.append((node, key))
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            for position, item in enumerate(node):
                if isinstance(item, str):
                    if len(item) in lengths and item in targets:
                        sites.append((node, position, item))
                elif isinstance(item, dict | list):
                    stack.append(item)
    return links


def rewrite(resource: Any, mapping: Mapping[str, str]) -> None:
    """Replace, in place, every string of ``resource`` equal to a key of ``mapping`` (and such
    links in the narrative) with its value."""
    if mapping:
        find_links(resource, mapping.keys()).rewrite(mapping)


def _rewrite_narrative(div: str, mapping: Mapping[str, str]) -> str:
    if "href" not in div and "src" not in div:
        return div

    def replace(match: re.Match[str]) -> str:
        target = mapping.get(match.group(3))
        if target is None:
            return match.group(0)
        return f"{match.group(1)}={match.group(2)}{target}{match.group(2)}"

    return _NARRATIVE_LINK.sub(replace, div)
