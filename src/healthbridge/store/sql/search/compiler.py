"""Compiled search statements, cached per statement shape (https://hl7.org/fhir/R4/search.html).

Search statements differ per query, but far fewer differ in shape: ``code=A`` and ``code=B``
compile to the same text with different parameters. SQLAlchemy's cache key of a statement
separates the two (the shape, and the bound values in order), so the text is compiled once per
shape and the values of each query are bound to it. Values are only ever bound parameters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from healthbridge.store.sql.compiled import Statement
from healthbridge.store.sql.dialects import Dialect

CACHED_SHAPES = 1000


class Compiler:
    """Turns statements into driver-ready text and positional arguments for one dialect."""

    def __init__(self, dialect: Dialect, size: int = CACHED_SHAPES) -> None:
        self._dialect = dialect
        self._size = size
        self._cache: OrderedDict[Any, tuple[SQLCompiler, Statement]] = OrderedDict()

    def compile(self, statement: ClauseElement) -> tuple[Statement, tuple[Any, ...]]:
        sa = self._dialect.sa
        key = statement._generate_cache_key()
        if key is None:  # not cacheable: compile this once
            compiled: SQLCompiler = sa.statement_compiler(sa, statement)
            return self._statement(compiled), self._args(compiled, compiled.params)
        found = self._cache.get(key.key)
        if found is None:
            compiled = sa.statement_compiler(sa, statement, cache_key=key)
            found = (compiled, self._statement(compiled))
            self._cache[key.key] = found
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key.key)
        compiled, text = found
        params = compiled.construct_params(extracted_parameters=key.bindparams)
        return text, self._args(compiled, params)

    @staticmethod
    def _statement(compiled: SQLCompiler) -> Statement:
        return Statement(compiled.string, tuple(compiled.positiontup or ()), {})

    @staticmethod
    def _args(compiled: SQLCompiler, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in compiled.positiontup or ())
