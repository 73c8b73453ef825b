"""Slicing: which slice each repeating element belongs to: https://hl7.org/fhir/R4/profiling.html#slicing.

Discriminators (https://hl7.org/fhir/R4/profiling.html#discriminator) of type ``value``,
``pattern``, ``type``, ``profile`` and ``exists`` are evaluated on a restricted FHIRPath:
``$this``, element names, ``extension('url')``, ``resolve()`` and ``ofType(T)`` / ``as(T)``.
An item matches a slice when every discriminator agrees; when one cannot be decided (a reference
that does not resolve, a profile that is unknown) the match is *unknown*: the caller then neither
counts the item in a slice nor blames it for matching none.

Extension slicing by ``url`` follows common validator practice: a slice whose ``url`` element
carries no fixed value is identified by its type profile (the extension's canonical URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from healthbridge.fhir.validation.elements import Node, choice_type
from healthbridge.fhir.validation.patterns import matches_fixed, matches_pattern

#: (value, FHIR type code or "" when not known from the JSON alone)
Typed = tuple[Any, str]
Resolve = Callable[[object], dict[str, Any] | None]
Conforms = Callable[[object, str, str], bool | None]  # (value, type code, profile url)

_EXTENSION: Final = re.compile(r"""extension\(\s*['"]([^'"]+)['"]\s*\)""")
_OF_TYPE: Final = re.compile(r"(?:ofType|as)\((\w+)\)")
UNKNOWN: Final = -1
NONE: Final = -2


@dataclass(frozen=True, slots=True)
class Matcher:
    """The hooks slicing needs from the walk: resolve a Reference, test profile conformance."""

    resolve: Resolve
    conforms: Conforms
    root: Callable[[str], Node | None]  # the compiled root element of a (target) profile
    bound: Callable[[object, str, str], bool | None]  # (value, type code, value set) -> member?


def split_path(path: str) -> list[str]:
    """``extension('http://a.b/c').value`` -> ``["extension('http://a.b/c')", "value"]``."""
    steps: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(path):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "." and depth == 0:
            steps.append(path[start:index])
            start = index + 1
    steps.append(path[start:])
    return [s.strip() for s in steps if s.strip()]


def _children(value: object, name: str) -> list[Typed]:
    if not isinstance(value, dict):
        return []
    if name in value:
        found = value[name]
        items = found if isinstance(found, list) else [found]
        return [
            (i, i.get("resourceType", "") if name == "resource" and isinstance(i, dict) else "")
            for i in items
        ]
    choices: list[Typed] = []
    for key, found in value.items():  # a choice element: value -> valueQuantity
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            choices.append((found, choice_type(key[len(name) :])))
    return choices


def values_at(item: Typed, path: str, matcher: Matcher) -> list[Typed] | None:
    """The values at a discriminator ``path`` below ``item``; None when a reference on the way
    does not resolve."""
    current: list[Typed] = [item]
    for step in split_path(path):
        following: list[Typed] = []
        if step == "$this":
            continue
        if step == "resolve()":
            for value, _ in current:
                target = matcher.resolve(value)
                if target is None:
                    return None
                following.append((target, str(target.get("resourceType", ""))))
        elif (ext := _EXTENSION.fullmatch(step)) is not None:
            for value, _ in current:
                following += [
                    (e, "Extension")
                    for e, _ in _children(value, "extension")
                    if isinstance(e, dict) and e.get("url") == ext.group(1)
                ]
        elif (cast := _OF_TYPE.fullmatch(step)) is not None:
            following = [(v, t) for v, t in current if _type_is(t, cast.group(1))]
        else:
            for value, _ in current:
                following += _children(value, step)
        current = following
    return current


def _type_is(found: str, wanted: str) -> bool:
    return found.lower() == wanted.lower()


def element_at(
    slice_node: Node, fallback: Node | None, path: str, matcher: Matcher
) -> tuple[Node | None, bool]:
    """The element of ``slice_node`` at a discriminator path (children a slice does not restate
    come from the sliced element ``fallback``). Steps after ``resolve()`` continue in the target
    profile; the flag says the path ends with ``resolve()`` (a profile discriminator then means
    the reference's target profiles)."""
    node: Node | None = slice_node
    steps = split_path(path)
    for position, step in enumerate(steps):
        if node is None:
            return None, False
        if step == "$this" or _OF_TYPE.fullmatch(step):
            continue
        if step == "resolve()":
            if position == len(steps) - 1:
                return node, True
            node, fallback = _target_root(node, matcher), None
            continue
        ext = _EXTENSION.fullmatch(step)
        if ext is not None:
            container = node.child("extension", fallback)
            node, fallback = _extension_slice(container, ext.group(1)), None
            continue
        found = node.child(step, fallback) or node.child(step + "[x]", fallback)
        fallback = fallback.child(step) if fallback is not None else None
        node = found
    return node, False


def _target_root(node: Node, matcher: Matcher) -> Node | None:
    for rule in node.types:
        for url in rule.targets:
            root = matcher.root(url)
            if root is not None:
                return root
    return None


def _extension_slice(container: Node | None, url: str) -> Node | None:
    if container is None:
        return None
    for candidate in container.slices:
        if url in extension_urls(candidate):
            return candidate
    return None


def extension_urls(node: Node) -> tuple[str, ...]:
    """The urls an extension slice accepts: its fixed ``url`` or its type profiles."""
    url = node.children.get("url")
    if url is not None and url.fixed is not None:
        return (str(url.fixed[1]),)
    return tuple(p.split("|")[0] for t in node.types for p in t.profiles)


def _expected(target: Node, kind: str, path: str, slice_node: Node) -> tuple[str, object] | None:
    if target.fixed is not None:
        return "fixed", target.fixed[1]
    if target.pattern is not None:
        return "pattern", target.pattern[1]
    if path.rsplit(".", maxsplit=1)[-1] == "url" or path == "url":
        owner = slice_node
        urls = extension_urls(owner)
        if urls:
            return "fixed", urls[0]
    return None


def _decide(
    kind: str,
    path: str,
    values: list[Typed],
    target: Node | None,
    resolved: bool,
    slice_node: Node,
    matcher: Matcher,
) -> bool | None:
    if kind == "exists":
        if target is None:
            return None
        return bool(values) if target.min >= 1 else (not values if target.max == 0 else None)
    if target is None:
        return None
    if kind in ("value", "pattern"):
        expected = _expected(target, kind, path, slice_node)
        if expected is None:
            return _in_binding(values, target, matcher)
        how, wanted = expected
        test = matches_fixed if how == "fixed" else matches_pattern
        return any(test(v, wanted) for v, _ in values)
    if kind == "type":
        codes = {t.code.lower() for t in target.types}
        return bool(values) and all(t.lower() in codes for _, t in values)
    if kind == "profile":
        urls = [p for t in target.types for p in (t.targets if resolved else t.profiles)]
        if not urls:
            return None
        answers = [matcher.conforms(v, t, url) for v, t in values for url in urls]
        return True if True in answers else (None if None in answers or not answers else False)
    return None


def _in_binding(values: list[Typed], target: Node, matcher: Matcher) -> bool | None:
    """A value discriminator on an element with a required binding and no fixed value."""
    if target.binding is None or target.binding[0] != "required" or not values:
        return None
    code = target.types[0].code if target.types else ""
    answers = [matcher.bound(v, t or code, target.binding[1]) for v, t in values]
    return True if True in answers else (None if None in answers else False)


def match(
    item: Typed, slice_node: Node, fallback: Node, slicing: Any, matcher: Matcher
) -> bool | None:
    """Whether ``item`` belongs to ``slice_node`` (None: cannot tell)."""
    verdict: bool | None = True
    for kind, path in slicing:
        values = values_at(item, path, matcher)
        if values is None:
            verdict = None
            continue
        target, resolved = element_at(slice_node, fallback, path, matcher)
        answer = _decide(kind, path, values, target, resolved, slice_node, matcher)
        if answer is False:
            return False
        if answer is None:
            verdict = None
    return verdict


def default_discriminators(node: Node) -> tuple[tuple[str, str], ...]:
    """Slices without stated slicing: extensions by url, choice types by type."""
    if node.name in ("extension", "modifierExtension"):
        return (("value", "url"),)
    return (("type", "$this"),)


def assign(items: Sequence[Typed], node: Node, matcher: Matcher) -> list[int]:
    """For each item, the index of the first slice it matches, ``UNKNOWN`` when that cannot be
    decided, or ``NONE`` when it matches no slice."""
    slicing = node.slicing
    discriminators = (
        slicing.discriminators
        if slicing and slicing.discriminators
        else (default_discriminators(node))
    )
    found: list[int] = []
    for item in items:
        choice = NONE
        for index, slice_node in enumerate(node.slices):
            answer = match(item, slice_node, node, discriminators, matcher)
            if answer is True:
                choice = index
                break
            if answer is None:
                choice = UNKNOWN
        found.append(choice)
    return found
