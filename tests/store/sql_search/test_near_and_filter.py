"""``near`` (https://hl7.org/fhir/R4/location.html#positional) and ``_filter``
(https://hl7.org/fhir/R4/search_filter.html) on SQLite and PostgreSQL: the SQL haversine test
agrees with :func:`healthbridge.fhir.search.near.distance_km`, across the antimeridian and near
the poles, and filter trees combine their clauses as written."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from healthbridge.fhir.search.near import distance_km, parse_near
from healthbridge.store.sql.repository import SqlRepository
from tests.store.search_fixtures import PARSER, resource, store

NEAR_QUERIES = [
    "52|4|50",
    "52|4|100|km",
    "0|179.9|200",
    "0|-179.9|300",
    "89|0|500",
    "52.1|4.1|10|[mi_i]",
    "52|4|20000|m",
    "0|0|20100",
]


def _points() -> dict[str, tuple[float, float]]:
    rnd = random.Random(3)
    points: dict[str, tuple[float, float]] = {}
    for i in range(120):
        if i < 50:  # around one city
            lat, lon = 52 + rnd.uniform(-1, 1), 4 + rnd.uniform(-1.5, 1.5)
        elif i < 70:  # either side of the antimeridian
            lat, lon = rnd.uniform(-5, 5), 179.5 + rnd.uniform(-1, 1)
            lon = lon - 360 if lon > 180 else lon
        else:
            lat, lon = rnd.uniform(-89.9, 89.9), rnd.uniform(-180, 180)
        points[f"l{i}"] = (round(lat, 4), round(lon, 4))
    return points


async def test_near_agrees_with_the_haversine_distance(sql_repo: SqlRepository) -> None:
    points = _points()
    for id, (lat, lon) in points.items():
        position = {"latitude": Decimal(str(lat)), "longitude": Decimal(str(lon))}
        await store(sql_repo, resource("Location", id, position=position))
    for raw in NEAR_QUERIES:
        query = parse_near(raw)
        wanted = {
            id
            for id, (lat, lon) in points.items()
            if distance_km(query.latitude, query.longitude, lat, lon) <= query.distance_km
        }
        page = await sql_repo.search(PARSER.parse("Location", [("near", raw), ("_count", "500")]))
        assert {s.id for s in page.matches} == wanted, raw


@pytest.mark.parametrize(
    ("expression", "wanted"),
    [
        ('name co "pet"', "acd"),
        ('name co "pet" and (birthdate ge 2014-10-10 or not (gender eq male))', "ac"),
        ('family eq "smith"', "b"),
        ('family ew "sen"', "c"),
        ("not (gender eq male)", "bc"),
        ('family sw "pet" or gender eq female', "abc"),
    ],
)
async def test_filter_trees(sql_repo: SqlRepository, expression: str, wanted: str) -> None:
    for id, family, gender, born in [
        ("a", "Peterson", "male", "2015-01-01"),
        ("b", "Smith", "female", "2010-05-05"),
        ("c", "Petersen", "female", "2016-02-02"),
        ("d", "Carpet", "male", "2001-01-01"),
    ]:
        await store(
            sql_repo,
            resource("Patient", id, name=[{"family": family}], gender=gender, birthDate=born),
        )
    page = await sql_repo.search(PARSER.parse("Patient", [("_filter", expression)]))
    assert "".join(sorted(s.id for s in page.matches)) == wanted
