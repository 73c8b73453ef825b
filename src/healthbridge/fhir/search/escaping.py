"""Search value escaping: https://hl7.org/fhir/R4/search.html#escaping.

In a search value ``\\,`` ``\\$`` ``\\|`` and ``\\\\`` stand for the literal characters; the
unescaped ``,`` separates OR values, ``|`` the parts of tokens and quantities, ``$`` the parts
of composites.
"""

from __future__ import annotations


def split_unescaped(raw: str, separator: str, maxsplit: int = -1) -> list[str]:
    """Split ``raw`` on ``separator`` where it is not escaped; escapes are kept in the pieces."""
    out: list[str] = []
    start = 0
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            i += 2
            continue
        if char == separator and (maxsplit < 0 or len(out) < maxsplit):
            out.append(raw[start:i])
            start = i + 1
        i += 1
    out.append(raw[start:])
    return out


def unescape(piece: str) -> str:
    """Undo the search escapes in one piece of a value."""
    if "\\" not in piece:
        return piece
    out: list[str] = []
    i = 0
    while i < len(piece):
        if piece[i] == "\\" and i + 1 < len(piece) and piece[i + 1] in ",$|\\":
            out.append(piece[i + 1])
            i += 2
        else:
            out.append(piece[i])
            i += 1
    return "".join(out)
