"""Contract: string and token search on every backend.

Spec: https://hl7.org/fhir/R4/search.html#string (starts-with after case and accent folding,
``:exact``, ``:contains``), #token (``[system]|[code]``, ``:text``, ``:not``, ``:of-type``) and
#escaping (``\\,`` ``\\|`` ``\\$`` ``\\\\``). LIKE wildcards (``%``, ``_``) in values are
ordinary characters. Expected ids are written out by hand.
"""

from __future__ import annotations

import dataclasses

from healthbridge.fhir.search.query import TokenQuery
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import expect_matches, parse, resource, store

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def named(id: str, family: str | None = None, *given: str) -> dict[str, object]:
    name: dict[str, object] = {}
    if family is not None:
        name["family"] = family
    if given:
        name["given"] = list(given)
    return resource("Patient", id, **({"name": [name]} if name else {}))


async def _names(repo: Repository) -> None:
    await store(
        repo,
        named("muller-umlaut", "Müller", "Hans"),
        named("mueller", "Mueller"),
        named("muller-plain", "muller"),
        named("mullerova", "Mullerová"),
        named("schmuller", "Schmuller"),
        named("percent", "100%"),
        named("hundred-x", "100x"),
        named("underscore", "a_b"),
        named("acb", "acb"),
        named("backslash", "a\\b"),
        named("comma", "Smith, Jr"),
        named("smithers", "Smithers"),
        named("dollar", "a$b"),
        named("pipe", "a|b"),
        named("no-name"),
    )


async def test_string_default_is_starts_with_ignoring_case_and_accents(repo: Repository) -> None:
    """search.html#string: "a field matches ... if the value of the field equals or starts with
    the supplied parameter value, after both have been normalized by case and accent"; ``:missing``
    finds resources without a name."""
    await _names(repo)
    mullers = {"muller-umlaut", "muller-plain", "mullerova"}
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=Müller", mullers),
            ("family=muller", mullers),
            ("family=MULLER", mullers),
            ("family=MÜLLERová", {"mullerova"}),
            ("family=mue", {"mueller"}),
            ("family=uller", set()),
            ("name=hans", {"muller-umlaut"}),
            ("given=HA", {"muller-umlaut"}),
            ("family=mueller,schmu", {"mueller", "schmuller"}),
            ("given=hans&family=mul", {"muller-umlaut"}),
            ("given=hans&family=mue", set()),
            ("name:missing=true", {"no-name"}),
        ],
    )


async def test_string_exact_and_contains(repo: Repository) -> None:
    """search.html#modifiers: ``:exact`` is the whole string, case and accents included;
    ``:contains`` matches anywhere in the (normalized) string."""
    await _names(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("family:exact=Müller", {"muller-umlaut"}),
            ("family:exact=muller", {"muller-plain"}),
            ("family:exact=Mül", set()),
            ("family:exact=Muller", set()),
            ("family:contains=ULLER", {"muller-umlaut", "muller-plain", "mullerova", "schmuller"}),
            ("family:contains=LLERO", {"mullerova"}),
            ("family:contains=ith", {"comma", "smithers"}),
        ],
    )


async def test_string_like_wildcards_are_literal(repo: Repository) -> None:
    """search.html#string: values are plain text; an SQL LIKE wildcard (``%``, ``_``) or its
    escape character in a value must match only itself."""
    await _names(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=100%", {"percent"}),
            ("family=100", {"percent", "hundred-x"}),
            ("family=a_b", {"underscore"}),
            ("family=a_", {"underscore"}),
            ("family:contains=%", {"percent"}),
            ("family:contains=_", {"underscore"}),
            ("family:exact=a_b", {"underscore"}),
            ("family:exact=100%", {"percent"}),
            ("family=a\\\\b", {"backslash"}),
            ("family:contains=\\\\", {"backslash"}),
            ("family:exact=a\\\\b", {"backslash"}),
        ],
    )


async def test_string_escaped_separators(repo: Repository) -> None:
    """search.html#escaping: ``\\,`` is a literal comma inside one value (an unescaped comma
    separates OR values); ``\\$`` and ``\\|`` are literal too."""
    await _names(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("family=Smith\\,", {"comma"}),
            ("family=Smith,Jr", {"comma", "smithers"}),
            ("family:exact=Smith\\, Jr", {"comma"}),
            ("family=a\\$b", {"dollar"}),
            ("family=a\\|b", {"pipe"}),
            ("family:contains=$", {"dollar"}),
        ],
    )


# -- tokens --------------------------------------------------------------------------------


async def _codes(repo: Repository) -> None:
    def obs(id: str, **fields: object) -> dict[str, object]:
        return resource("Observation", id, status="final", **fields)

    await store(
        repo,
        obs(
            "loinc",
            code={
                "coding": [{"system": LOINC, "code": "1234-5", "display": "Glucose"}],
                "text": "Blood sugar",
            },
        ),
        obs("snomed", code={"coding": [{"system": SNOMED, "code": "1234-5"}]}),
        obs("no-system", code={"coding": [{"code": "1234-5"}]}),
        obs("heart", code={"coding": [{"system": LOINC, "code": "9999-9", "display": "Heart"}]}),
        obs(
            "two-codings",
            code={
                "coding": [
                    {"system": LOINC, "code": "8867-4"},
                    {"system": SNOMED, "code": "364075005"},
                ],
                "text": "Pulse",
            },
        ),
        obs("upper", code={"coding": [{"system": LOINC, "code": "ABC"}]}),
        obs("no-code"),
    )


async def test_token_system_and_code(repo: Repository) -> None:
    """search.html#token: ``code`` any system; ``system|code``; ``|code`` no system;
    ``system|`` any code in the system. Codes compare exactly (case-sensitive). ``:missing``."""
    await _codes(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("code=1234-5", {"loinc", "snomed", "no-system"}),
            (f"code={LOINC}|1234-5", {"loinc"}),
            ("code=|1234-5", {"no-system"}),
            (f"code={LOINC}|", {"loinc", "heart", "two-codings", "upper"}),
            ("code=abc", set()),
            ("code=ABC", {"upper"}),
            (f"code={SNOMED}|364075005", {"two-codings"}),
            ("code=1234", set()),
            ("code:missing=true", {"no-code"}),
        ],
    )


async def test_token_or_and(repo: Repository) -> None:
    """search.html#combining: OR within a value list, AND across repeats (both codings of
    one CodeableConcept satisfy two repeats)."""
    await _codes(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            (f"code={LOINC}|9999-9,{SNOMED}|364075005", {"heart", "two-codings"}),
            (f"code={LOINC}|8867-4&code={SNOMED}|364075005", {"two-codings"}),
            (f"code={LOINC}|8867-4&code={LOINC}|9999-9", set()),
        ],
    )


async def test_token_thousands_of_values(repo: Repository) -> None:
    """search.html#combining: a value list of thousands of codes (what the REST layer makes of
    a token ``:in`` or ``:below``; the parser itself takes fewer) keeps every token's meaning:
    ``system|code``, ``|code``, a bare code, ``system|``; also under ``:not``."""
    await _codes(repo)
    loinc = [TokenQuery(LOINC, f"x{i}") for i in range(3000)]
    bare = [TokenQuery(None, f"y{i}") for i in range(3000)]
    empty = [TokenQuery("", f"z{i}") for i in range(3000)]
    cases = [
        ("code", [*loinc, TokenQuery(LOINC, "1234-5"), TokenQuery(SNOMED, "364075005")],
         {"loinc", "two-codings"}),
        ("code", [*bare, TokenQuery(None, "ABC")], {"upper"}),
        ("code", [*empty, TokenQuery("", "1234-5")], {"no-system"}),
        ("code", [*loinc, *bare, TokenQuery(SNOMED, None)], {"snomed", "two-codings"}),
        ("code:not", [*loinc, TokenQuery(LOINC, "9999-9")],
         {"loinc", "snomed", "no-system", "two-codings", "upper", "no-code"}),
    ]  # fmt: skip
    for name, values, wanted in cases:
        query = parse("Observation", f"{name}=x&_count=100")
        clause = dataclasses.replace(query.clauses[0], values=tuple(values))
        page = await repo.search(dataclasses.replace(query, clauses=(clause,)))
        assert {match.id for match in page.matches} == wanted, (name, len(values))


async def test_token_not_includes_resources_without_a_value(repo: Repository) -> None:
    """search.html#modifiers: ``:not`` returns the resources that do not have a matching value,
    including those with no value at all."""
    await _codes(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            (
                f"code:not={LOINC}|1234-5",
                {"snomed", "no-system", "heart", "two-codings", "upper", "no-code"},
            ),
            ("code:not=1234-5", {"heart", "two-codings", "upper", "no-code"}),
            (f"code:not={LOINC}|", {"snomed", "no-system", "no-code"}),
            (f"code:not={LOINC}|1234-5&code={SNOMED}|", {"snomed", "two-codings"}),
            (
                f"code:not={LOINC}|1234-5,{LOINC}|9999-9",
                {"snomed", "no-system", "two-codings", "upper", "no-code"},
            ),
        ],
    )


async def test_token_text_searches_display_and_text(repo: Repository) -> None:
    """search.html#modifiers: ``:text`` matches CodeableConcept.text or Coding.display with
    string rules (starts-with, case and accent insensitive)."""
    await _codes(repo)
    await expect_matches(
        repo,
        "Observation",
        [
            ("code:text=blood", {"loinc"}),
            ("code:text=GLU", {"loinc"}),
            ("code:text=pulse", {"two-codings"}),
            ("code:text=heart,pulse", {"heart", "two-codings"}),
            ("code:text=1234-5", set()),
        ],
    )


async def _people(repo: Repository) -> None:
    mrn = {"coding": [{"system": V2_0203, "code": "MR"}]}
    await store(
        repo,
        resource(
            "Patient",
            "f",
            gender="female",
            active=True,
            identifier=[{"system": "http://hospital/mrn", "value": "A-1", "type": mrn}],
            telecom=[
                {"system": "email", "value": "f@example.org"},
                {"system": "phone", "value": "555-1234"},
            ],
        ),
        resource(
            "Patient",
            "m",
            gender="male",
            active=False,
            identifier=[
                {"system": "http://other/ids", "value": "A-1"},
                {"system": "http://hospital/mrn", "value": "a|b", "type": mrn},
            ],
            telecom=[{"system": "phone", "value": "f@example.org"}],
        ),
        resource("Patient", "u", identifier=[{"system": "http://hospital/mrn", "value": "a-1"}]),
    )


async def test_token_codes_booleans_identifiers_and_contact_points(repo: Repository) -> None:
    """search.html#token: a code, a boolean (``true``/``false``), an Identifier
    (``system|value``, case-sensitive), a ContactPoint (its value; ``email``/``phone`` only
    the telecoms of that system)."""
    await _people(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            ("gender=female", {"f"}),
            ("gender=female,male", {"f", "m"}),
            ("gender:not=female", {"m", "u"}),
            ("gender:missing=true", {"u"}),
            ("active=true", {"f"}),
            ("active=false", {"m"}),
            ("identifier=A-1", {"f", "m"}),
            ("identifier=http://hospital/mrn|A-1", {"f"}),
            ("identifier=a-1", {"u"}),
            ("identifier=http://hospital/mrn|a\\|b", {"m"}),
            ("identifier=http://hospital/mrn|", {"f", "m", "u"}),
            ("email=f@example.org", {"f"}),
            ("phone=f@example.org", {"m"}),
            ("telecom=555-1234", {"f"}),
        ],
    )


async def test_token_of_type(repo: Repository) -> None:
    """search.html#modifiers: ``identifier:of-type=system|code|value`` matches an Identifier by
    its type coding and value."""
    await _people(repo)
    await expect_matches(
        repo,
        "Patient",
        [
            (f"identifier:of-type={V2_0203}|MR|A-1", {"f"}),
            (f"identifier:of-type={V2_0203}|MR|a\\|b", {"m"}),
            (f"identifier:of-type={V2_0203}|DL|A-1", set()),
            (f"identifier:of-type={V2_0203}|MR|a-1", set()),
        ],
    )


async def test_full_text_skips_overlong_words_and_keeps_the_rest(repo: Repository) -> None:
    """search.html#text: words are runs of letters and digits; a run longer than 255
    characters (encoded data, say) is not indexed as a word, and storing it never fails
    (PostgreSQL refuses lexemes over 2 KB)."""
    blob = "A" * 3000
    await store(
        repo,
        resource(
            "Patient", "blob", name=[{"family": "Quillfeather", "given": [blob]}], active=True
        ),
    )
    await expect_matches(
        repo, "Patient", [("_content=quillfeather", {"blob"}), ("_content=" + "a" * 300, set())]
    )
