"""Full-text search values: ``_text`` and ``_content`` (https://hl7.org/fhir/R4/search.html#text).

``_text`` searches the narrative (``text.div``, XHTML with the tags removed), ``_content`` the
whole resource (every string value in it, narrative included). Matching is by words: a value
matches when every word of it occurs in the searched text; several comma-separated values are
ORed as for any parameter. Words are runs of letters and digits after the same normalisation as
string search (case folded, accents removed), so ``Müller`` finds ``MULLER``.

The SQL backends index the text produced here (SQLite FTS5, PostgreSQL ``tsvector``) after this
same tokenisation, so that both databases and the in-memory matcher agree on what a word is.
"""

from __future__ import annotations

import html
import re
from typing import Any, Literal

from healthbridge.fhir.search.strings import normalize
from healthbridge.fhir.types import Resource

MAX_TEXT_CHARS = 65_536
"""Text indexed per resource and column; longer narratives are indexed up to this length."""
MAX_QUERY_WORDS = 32

TextField = Literal["narrative", "content"]
TEXT_PARAMS: dict[str, TextField] = {"_text": "narrative", "_content": "content"}
"""The full-text parameters (they have no expression) and the text each one searches."""
DESCRIPTIONS = {
    "_text": "the words of the narrative (text.div); a value matches when each of its words occurs",
    "_content": "the words of every string in the resource; a value matches when each occurs",
}

_WORD = re.compile(r"[^\W_]+")
_TAG = re.compile(r"<[^>]*>")


_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (ASCII text, the common case, without a regex)."""
    normalized = normalize(text)
    if normalized.isascii():
        return normalized.translate(_ASCII_SEPARATORS).split()
    return _WORD.findall(normalized)


MAX_WORD_CHARS = 255
"""Longer runs of letters and digits (encoded data, say) are not indexed as words."""


def _indexed(text: str) -> str:
    found = words(text[: MAX_TEXT_CHARS * 2])
    if found and max(map(len, found)) > MAX_WORD_CHARS:
        found = [w for w in found if len(w) <= MAX_WORD_CHARS]
    kept = " ".join(found)
    if len(kept) <= MAX_TEXT_CHARS:
        return kept
    return kept[:MAX_TEXT_CHARS].rsplit(" ", 1)[0]  # no word cut in two


def narrative_text(resource: Resource) -> str:
    """The words of the resource's narrative, space-separated ("" without one)."""
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str):
        return ""
    return _indexed(html.unescape(_TAG.sub(" ", div)))


def _strings(resource: Any) -> list[str]:
    """Every string value in ``resource`` but the narrative's ``div`` (iteratively: a recursive
    generator cost a third of a Synthea resource's indexing)."""
    found: list[str] = []
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str):
                    if key != "div":
                        found.append(value)
                elif isinstance(value, dict | list) and key != "div":
                    stack.append(value)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str):
                    found.append(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
    found.reverse()  # roughly document order, for the length cap
    return found


def content_text(resource: Resource, narrative: str | None = None) -> str:
    """The words of every string value of the resource, narrative included (``narrative``:
    its words when already known)."""
    parts = [narrative_text(resource) if narrative is None else narrative, *_strings(resource)]
    return _indexed(" ".join(parts))


def texts(resource: Resource) -> dict[TextField, str]:
    """The indexed words of the resource: its narrative, and its whole content."""
    narrative = narrative_text(resource)
    return {"narrative": narrative, "content": content_text(resource, narrative)}


def query_words(value: str) -> list[str]:
    """The words of one ``_text``/``_content`` value; ValueError when it has none or too many."""
    found = list(dict.fromkeys(words(value)))
    if not found:
        raise ValueError(f"{value!r} contains no words to search for")
    if len(found) > MAX_QUERY_WORDS:
        raise ValueError(f"at most {MAX_QUERY_WORDS} words per value")
    return found


def text_matches(query: list[str], text: str) -> bool:
    """True when every word of ``query`` is a word of ``text`` (an indexed text)."""
    present = set(text.split())
    return all(word in present for word in query)
