"""``_list`` (https://hl7.org/fhir/R4/search.html#list): the resources a List names in its
entries, on every backend."""

from __future__ import annotations

import pytest

from healthbridge.fhir.errors import InvalidRequest
from healthbridge.store.repository import Repository
from tests.store.search_fixtures import expect_matches, parse, person, resource, store


def _list(id: str, *items: str) -> dict[str, object]:
    entries = [{"item": {"reference": item}} for item in items]
    return resource("List", id, status="current", mode="working", entry=entries)


async def test_list_selects_the_resources_a_list_names(repo: Repository) -> None:
    await store(
        repo,
        person("a", ("Ash",)),
        person("b", ("Birch",)),
        person("c", ("Cedar",)),
        _list("l1", "Patient/a", "Patient/c", "Observation/x"),
        _list("l2", "Patient/b"),
    )
    await repo.delete("Patient", "c")
    await expect_matches(
        repo,
        "Patient",
        [
            ("_list=l1", {"a"}),  # c was deleted
            ("_list=l1,l2", {"a", "b"}),
            ("_list=l2&family=birch", {"b"}),
            ("_list=l2&family=ash", set()),
            ("_list=nope", set()),
        ],
    )


@pytest.mark.parametrize("value", ["$current-allergies", "a b", ""])
def test_functional_or_malformed_lists_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse("Patient", f"_list={value}")
    assert info.value.issues[0].expression == ("_list",)
