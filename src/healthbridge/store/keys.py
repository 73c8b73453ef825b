"""64-bit keys for resources and search parameters in the search index tables.

https://hl7.org/fhir/R4/search.html: every index row names the parameter and the resource it
belongs to. Instead of repeating ``("Observation", "code")`` and a 36-character id in tens of
millions of rows, rows carry two BIGINTs derived from those strings by BLAKE2b (the idea Blaze
uses for its index keys): ``rkey = key("Observation/5f3c...")`` and
``pkey = key("Observation.code")``. Because the key of a resource is a function of its type and
id, a reference's target key is known when the referring resource is indexed, with no lookup,
so chains, ``_has``, ``_include`` and compartments join on integers.

``resource.rkey`` is unique: the astronomically unlikely collision of two resources' keys fails
the second create with a Conflict instead of mixing their index rows.
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import blake2b


@lru_cache(maxsize=1 << 16)
def key(text: str) -> int:
    """A signed 64-bit key of ``text`` (fits BIGINT on SQLite and PostgreSQL). Cached: the
    same parameter and reference keys recur in every resource of a kind."""
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def resource_key(resource_type: str, id: str) -> int:
    return key(f"{resource_type}/{id}")


@lru_cache(maxsize=1 << 14)
def param_key(resource_type: str, code: str, facet: str = "") -> int:
    """The key of search parameter ``code`` on ``resource_type``; ``facet`` names derived rows
    stored beside it: ``text`` (a token's display text, for ``:text``), ``identifier`` (a
    Reference.identifier, for ``:identifier``), ``of-type`` (an Identifier with its type)."""
    return key(f"{resource_type}.{code}:{facet}" if facet else f"{resource_type}.{code}")
