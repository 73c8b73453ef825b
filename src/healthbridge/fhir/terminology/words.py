"""Words of concept names for the ``filter`` text of $expand:
https://hl7.org/fhir/R4/valueset-operation-expand.html (``filter``: "a text filter that is
applied to restrict the codes that are returned").

A concept matches a filter when every word of the filter starts a word of its display or of one
of its designations, ignoring case and accents' absence (``hea fail`` finds "Heart failure").
Words are runs of letters and digits, lower-cased. The memory store, the resource-backed code
systems and the SQL word index all split with :func:`words`, so every backend agrees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[^\W_]+")
MAX_WORD = 40
"""Longer runs are cut: the SQL index keys stay small and a prefix still matches."""


def words(text: str | None) -> list[str]:
    """The distinct words of ``text`` in order of appearance."""
    if not text:
        return []
    return list(dict.fromkeys(w[:MAX_WORD] for w in _WORD.findall(text.casefold())))


def matches(query: Iterable[str], names: Iterable[str | None]) -> bool:
    """Every word of ``query`` starts some word of ``names``."""
    present = {w for name in names for w in words(name)}
    return all(any(p.startswith(q) for p in present) for q in query)
