"""FHIR search on the SQL backend: https://hl7.org/fhir/R4/search.html.

:class:`SqlSearch` runs a parsed :class:`~healthbridge.fhir.search.query.SearchQuery`:
:mod:`.planner` builds one statement per page from a condition per clause (one module per
parameter type: :mod:`.token`, :mod:`.string`, :mod:`.date`, :mod:`.number`, :mod:`.quantity`,
:mod:`.reference`, :mod:`.uri`, :mod:`.composite`, :mod:`.resource_columns`, :mod:`.text`;
chains and ``_has`` in :mod:`.chain`), :mod:`.sort` orders, :mod:`.cursor` pages and
:mod:`.include` adds ``_include``/``_revinclude``.
"""

from __future__ import annotations

from healthbridge.store.sql.search.searcher import DEFAULT_TIMEOUT_S, SqlSearch

__all__ = ["DEFAULT_TIMEOUT_S", "SqlSearch"]
