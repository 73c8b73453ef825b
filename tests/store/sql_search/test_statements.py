"""The SQL the search planner writes (https://hl7.org/fhir/R4/search.html), checked without a
database: every value is a bound parameter on both dialects, LIKE wildcards in values are
escaped, key lists of any length are one parameter, and statements of one shape compile once."""

from __future__ import annotations

import dataclasses

import pytest

from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.fhir.search.query import SearchQuery
from healthbridge.store.keys import resource_key
from healthbridge.store.sql.dialects import POSTGRESQL, SQLITE, Dialect
from healthbridge.store.sql.search.compiler import Compiler
from healthbridge.store.sql.search.planner import Planner, count_statement, page_statement
from healthbridge.store.sql.search.string import escape_like

DEFINITIONS = load_definitions()
PARSER = SearchParser(DEFINITIONS)
DIALECTS = [pytest.param(SQLITE, id="sqlite"), pytest.param(POSTGRESQL, id="postgresql")]
MARK = "zq'x"  # a value that must never reach the SQL text


def parse(resource_type: str | None, querystring: str) -> SearchQuery:
    pairs = [tuple(p.split("=", 1)) for p in querystring.split("&")]
    return PARSER.parse(resource_type, [(n, v) for n, v in pairs])


def compiled(dialect: Dialect, query: SearchQuery, compiler: Compiler | None = None):  # type: ignore[no-untyped-def]
    plan = Planner(DEFINITIONS, dialect).plan(query)
    return (compiler or Compiler(dialect)).compile(page_statement(plan, None, 51))


QUERIES = [
    ("Patient", f"name={MARK}"),
    ("Patient", f"name:contains={MARK}"),
    ("Patient", f"name:exact={MARK}"),
    ("Patient", f"identifier=http://x|{MARK}"),
    ("Patient", f"gender:not={MARK}"),
    ("Patient", f"_id={MARK}"),
    ("Observation", f"code:text={MARK}"),
    ("Observation", f"subject=Patient/{MARK}"),
    ("Observation", f"subject:identifier=s|{MARK}"),
    ("Observation", f"subject:Patient.name={MARK}"),
    ("Patient", f"_has:Observation:patient:code={MARK}"),
    ("Observation", f"value-quantity=5|http://unitsofmeasure.org|{MARK}"),
    ("Observation", f"code-value-quantity=http://loinc.org|{MARK}$gt5"),
    ("ValueSet", f"url:below=http://{MARK}"),
    ("ValueSet", f"url:above=http://{MARK}/a"),
    ("Patient", f"identifier:of-type=http://t|MR|{MARK}"),
    ("Patient", f"_content={MARK}"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("resource_type", "querystring"), QUERIES)
def test_values_are_bound_never_written_into_the_sql(
    dialect: Dialect, resource_type: str, querystring: str
) -> None:
    statement, args = compiled(dialect, parse(resource_type, querystring))
    assert "zq" not in statement.sql
    # Ids are looked up by their resource key (a hash of type and id).
    keys = {resource_key("Patient", MARK), resource_key("Observation", MARK)}
    assert any((isinstance(a, str) and "zq" in a) or a in keys for a in args), args


@pytest.mark.parametrize("dialect", DIALECTS)
def test_dates_numbers_and_sort_values_are_bound(dialect: Dialect) -> None:
    query = parse("Observation", "date=ge2013-03-14&value-quantity=le987654&_sort=-date,code")
    statement, args = compiled(dialect, query)
    assert "2013" not in statement.sql and "987654" not in statement.sql
    assert 987654.0 in args


def test_like_wildcards_and_the_escape_character_are_escaped() -> None:
    assert escape_like("100%") == "100\\%"
    assert escape_like("a_b") == "a\\_b"
    assert escape_like("a\\b") == "a\\\\b"
    statement, args = compiled(SQLITE, parse("Patient", "name:contains=5%_"))
    assert "ESCAPE" in statement.sql
    assert "%5\\%\\_%" in args


@pytest.mark.parametrize("dialect", DIALECTS)
def test_statements_of_one_shape_compile_once(dialect: Dialect) -> None:
    compiler = Compiler(dialect)
    first, first_args = compiled(dialect, parse("Observation", "patient=a&code=x"), compiler)
    second, second_args = compiled(dialect, parse("Observation", "patient=b&code=y"), compiler)
    assert second is first  # the cached text
    assert first_args != second_args
    assert "x" in first_args and "y" in second_args


@pytest.mark.parametrize("dialect", DIALECTS)
def test_many_keys_are_one_parameter(dialect: Dialect) -> None:
    """``Provenance?target=123`` may refer to any resource type: one key per type, bound as a
    single array (PostgreSQL) or JSON list (SQLite), so the text does not grow with them."""
    _statement, args = compiled(dialect, parse("Provenance", "target=123"))
    assert len(args) < 10
    lists = [a for a in args if isinstance(a, list | str) and len(a) > 100]
    assert lists


@pytest.mark.parametrize("dialect", DIALECTS)
def test_count_and_compartment_statements(dialect: Dialect) -> None:
    query = dataclasses.replace(parse("Observation", f"code={MARK}"), compartment=("Patient", MARK))
    plan = Planner(DEFINITIONS, dialect).plan(query)
    statement, _args = Compiler(dialect).compile(count_statement(plan))
    assert "count(*)" in statement.sql.lower() and "zq" not in statement.sql
