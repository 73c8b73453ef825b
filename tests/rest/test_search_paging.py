"""Paging, totals and sorting over HTTP: https://hl7.org/fhir/R4/search.html#count, #paging
(``next`` links with an opaque cursor; pages neither repeat nor skip), #total, #summary
(``_summary=count``) and #sort. The ``self`` link holds only the parameters understood."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from starlette.testclient import TestClient

from tests.rest.search_support import FORM, entries, links, put, relative, search, walk


def _patients(client: TestClient, count: int) -> list[str]:
    names = [f"p{i:02}" for i in range(count)]
    for i, id in enumerate(names):
        put(
            client,
            {
                "resourceType": "Patient",
                "id": id,
                "gender": "female" if i % 2 else "male",
                "birthDate": f"19{50 + i}",
            },
        )
    return names


def test_next_links_walk_every_match_once(client: TestClient) -> None:
    """search.html#paging: following ``next`` visits each match once, every page full but the
    last; the links keep the search's parameters and add ``_cursor``."""
    names = _patients(client, 7)
    pages = walk(client, "/fhir/Patient?_count=3&_sort=birthdate")
    assert [len(entries(p)) for p in pages] == [3, 3, 1]
    seen = [e.split("/")[1] for p in pages for e in entries(p)]
    assert seen == names
    first, second, last = (links(p) for p in pages)
    assert "next" not in last
    query = dict(parse_qsl(urlsplit(first["next"]).query))
    assert query["_count"] == "3"
    assert query["_sort"] == "birthdate"
    assert "_cursor" in query
    assert "_cursor" not in dict(parse_qsl(urlsplit(first["self"]).query))
    assert dict(parse_qsl(urlsplit(second["self"]).query))["_cursor"] == query["_cursor"]
    assert search(client, relative(second["self"])).get("entry") == pages[1].get("entry")


def test_paging_a_filtered_search_and_a_posted_one(client: TestClient) -> None:
    """http.html#search: the links of a POSTed search are GET links that continue it."""
    _patients(client, 9)
    got = [e for p in walk(client, "/fhir/Patient?gender=male&_count=2") for e in entries(p)]
    assert len(got) == 5 and len(set(got)) == 5
    posted = client.post("/fhir/Patient/_search", content="gender=male&_count=2", headers=FORM)
    bundle = posted.json()
    assert entries(bundle) == got[:2]
    rest = walk(client, relative(links(bundle)["next"]))
    assert entries(bundle) + [e for p in rest for e in entries(p)] == got


def test_writes_between_pages_do_not_repeat_resources(client: TestClient) -> None:
    """search.html#paging: the cursor continues after the last resource of the page."""
    names = _patients(client, 6)
    first = search(client, "/fhir/Patient?_count=3")
    seen = [e.split("/")[1] for e in entries(first)]
    for id in names:
        put(client, {"resourceType": "Patient", "id": id, "gender": "other"})
    put(client, {"resourceType": "Patient", "id": "late", "gender": "other"})
    rest = walk(client, relative(links(first)["next"]))
    seen += [e.split("/")[1] for p in rest for e in entries(p)]
    assert len(seen) == len(set(seen))
    assert set(names) <= set(seen)


def test_total(client: TestClient) -> None:
    """search.html#total: given when the result fits on one page or ``_total`` asks for it;
    ``_total=none`` never."""
    _patients(client, 5)
    assert search(client, "/fhir/Patient")["total"] == 5
    assert "total" not in search(client, "/fhir/Patient?_count=2")
    for page in walk(client, "/fhir/Patient?_count=2&_total=accurate"):
        assert page["total"] == 5
    assert "total" not in search(client, "/fhir/Patient?_total=none")
    assert search(client, "/fhir/Patient?gender=unknown")["total"] == 0


def test_summary_count_gives_the_total_only(client: TestClient) -> None:
    """search.html#summary: ``_summary=count`` returns the count and no resources."""
    _patients(client, 5)
    bundle = search(client, "/fhir/Patient?gender=female&_summary=count")
    assert bundle["total"] == 2
    assert "entry" not in bundle
    assert "next" not in links(bundle)


def test_sort(client: TestClient) -> None:
    """search.html#sort: ``-`` sorts descending; several keys order ties in turn."""
    names = _patients(client, 4)
    ascending = entries(search(client, "/fhir/Patient?_sort=birthdate"))
    assert [e.split("/")[1] for e in ascending] == names
    descending = entries(search(client, "/fhir/Patient?_sort=-birthdate"))
    assert descending == ascending[::-1]
    by_gender = entries(search(client, "/fhir/Patient?_sort=gender,-birthdate"))
    assert [e.split("/")[1] for e in by_gender] == ["p03", "p01", "p02", "p00"]
