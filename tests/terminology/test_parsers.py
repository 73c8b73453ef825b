"""The release-file parsers on small synthetic releases in the publishers' formats.

LOINC CSV (https://loinc.org/kb/users-guide/), SNOMED CT RF2 (https://hl7.org/fhir/R4/snomedct.html),
RxNorm RRF (https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html), the ICD-10-CM order
file (https://terminology.hl7.org/ICD10CM.html) and the CDC CVX table
(https://terminology.hl7.org/CVX.html). No licensed content: codes and names are made up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from healthbridge.fhir.terminology.concepts import Concept
from healthbridge.terminology import cvx, icd10cm, snomed
from healthbridge.terminology.loader import open_source
from healthbridge.terminology.release import ReleaseError
from healthbridge.terminology.source import FSN, SYNONYM
from tests.terminology.conftest import DATA


def _read(kind: str, path: Path | None = None, version: str | None = None) -> dict[str, Concept]:
    with open_source(kind, path or DATA / kind, version) as source:
        concepts = list(source.concepts())
        assert source.total == len(concepts)
        again = [c.code for c in source.concepts()]
    assert again == [c.code for c in concepts], "a resumed load relies on a stable order"
    assert len({c.code for c in concepts}) == len(concepts)
    return {c.code: c for c in concepts}


def _props(concept: Concept) -> dict[str, object]:
    return {p.code: p.value for p in concept.properties}


def test_loinc_terms_parts_and_hierarchy() -> None:
    concepts = _read("loinc")
    glucose = concepts["90001-1"]
    assert glucose.display == "Glucose [Mass/volume] in Serum or Plasma"
    assert glucose.parents == ("LP0002-8", "LP0003-6")  # two places in the hierarchy
    assert _props(glucose)["SCALE_TYP"] == "Qn"
    assert _props(glucose)["CLASSTYPE"] == "1"
    assert "METHOD_TYP" not in _props(glucose)  # empty columns are no property
    fsn = next(d for d in glucose.designations if d.use == FSN)
    assert fsn.value == "Glucose:MCnc:Pt:Ser/Plas:Qn:"
    assert concepts["LP0002-8"].parents == ("LP0001-0",)
    assert concepts["LP0001-0"].parents == ()


def test_loinc_deprecated_quoted_commas_utf8_and_fallback_display() -> None:
    concepts = _read("loinc")
    assert concepts["90002-9"].inactive and _props(concepts["90002-9"])["STATUS"] == "DEPRECATED"
    sodium = concepts["90003-7"]
    assert _props(sodium)["COMPONENT"] == "Sodium, ionized"
    assert sodium.display is not None and sodium.display.endswith("(Größe µg)")
    discouraged = concepts["90004-5"]
    assert not discouraged.inactive  # only DEPRECATED is inactive
    assert discouraged.display == "Body height"  # no LONG_COMMON_NAME: the short name


def test_loinc_version_from_the_table_or_given() -> None:
    with open_source("loinc", DATA / "loinc") as source:
        assert source.info.version == "2.77"  # the highest VersionLastChanged
    with open_source("loinc", DATA / "loinc", "2.78") as source:
        assert source.info.version == "2.78"


def test_loinc_without_hierarchy_file(tmp_path: Path) -> None:
    shutil.copytree(DATA / "loinc" / "LoincTable", tmp_path / "LoincTable")
    concepts = _read("loinc", tmp_path)
    assert sorted(concepts) == ["90001-1", "90002-9", "90003-7", "90004-5"]
    assert concepts["90001-1"].parents == ()


def test_snomed_display_designations_and_parents() -> None:
    concepts = _read("snomed")
    both = concepts["1000004"]
    assert both.parents == ("1000002", "1000003")
    assert both.display == "Cardiopulmonary disease"  # preferred in US English over GB
    assert _props(both)["sufficientlyDefined"] is True
    heart = concepts["1000002"]
    assert heart.display == "Heart disease"  # preferred in the GB set, none in US
    assert heart.definition == "A disorder of the heart, its valves or vessels."
    values = {d.value: d.use for d in heart.designations}
    assert values["Disorder of heart (disorder)"] == FSN
    assert values["Cardiac disorder"] == SYNONYM
    assert "Retired heart term" not in values  # inactive description
    assert concepts["1000001"].display == "Clinical finding"
    assert concepts["1000006"].display == "Ménière's disease"


def test_snomed_inactive_concept_keeps_no_parents() -> None:
    old = _read("snomed")["1000005"]
    assert old.inactive and _props(old)["inactive"] is True
    assert old.parents == ()  # its is-a relationship is inactive


def test_snomed_version_is_the_edition_uri() -> None:
    with open_source("snomed", DATA / "snomed") as source:
        assert source.info.version == ("http://snomed.info/sct/900000000000207008/version/20240101")
        assert source.info.url == "http://snomed.info/sct"


def test_snomed_edition_from_module_dependencies() -> None:
    rows = [
        ["1", "20240301", "1", "731000124108", "900000000000534007", "900000000000207008"],
        ["2", "20240301", "1", "731000124108", "900000000000534007", "900000000000012004"],
        ["3", "20240101", "1", "900000000000207008", "900000000000534007", "900000000000012004"],
    ]
    assert snomed.edition_module(rows) == "731000124108"


def test_snomed_rejects_a_file_with_the_wrong_header() -> None:
    with pytest.raises(ReleaseError, match="RF2 concept file"):
        list(snomed.rows(["id\tterm\n", "1\tx\n"], "concept", "sct2_Concept_Snapshot.txt"))


def test_rxnorm_display_by_term_type_relations_and_suppression() -> None:
    concepts = _read("rxnorm")
    assert sorted(concepts) == ["1000", "2000", "3000", "4000", "5000", "6000"]  # RXNORM only
    scd = concepts["2000"]
    assert scd.display == "examplamine 500 MG Oral Tablet"
    assert [d.value for d in scd.designations] == ["examplamine 500mg tab"]
    assert {p.value for p in scd.properties if p.code == "TTY"} == {"SCD", "PSN", "SY"}
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    # RXNREL "2000|...|tradename_of|5000" reads: 5000 is a tradename of 2000
    assert _props(concepts["5000"])["tradename_of"] == (rxnorm, "2000")
    assert _props(scd)["has_ingredient"] == (rxnorm, "1000")
    assert concepts["4000"].inactive  # every atom suppressed
    assert concepts["6000"].display == "café extract"
    with open_source("rxnorm", DATA / "rxnorm") as source:
        assert source.info.version == "01022024"


def test_icd10cm_dotted_codes_parents_and_headers() -> None:
    concepts = _read("icd10cm")
    assert concepts["A01.01"].parents == ("A01.0",)
    assert concepts["A01.0"].parents == ("A01",)
    assert concepts["A01"].parents == ()
    # the 7th-character codes skip the absent X placeholder level
    assert concepts["S00.00XA"].parents == ("S00.00",)
    assert _props(concepts["A01.0"])["notSelectable"] is True
    assert _props(concepts["A01.01"])["notSelectable"] is False
    long, short = concepts["S00.00XA"].display, concepts["S00.00XA"].designations[0].value
    assert long == "Unspecified superficial injury of scalp, initial encounter"
    assert short == "Unsp superficial injury of scalp, initial encounter"
    with open_source("icd10cm", DATA / "icd10cm" / "icd10cm_order_2024.txt") as source:
        assert source.info.version == "2024"


def test_icd10cm_rejects_lines_out_of_format() -> None:
    with pytest.raises(ReleaseError, match="line 1 is not an ICD-10-CM order file line"):
        list(icd10cm.concepts(["A00,Cholera\n"]))


def test_cvx_status_multiline_notes_and_windows_encoding() -> None:
    concepts = _read("cvx", DATA / "cvx" / "cvx.txt")
    assert concepts["03"].display == "MMR"
    assert not concepts["03"].inactive
    assert concepts["998"].inactive and _props(concepts["998"])["nonvaccine"] is True
    assert concepts["173"].inactive  # Non-US
    assert _props(concepts["75"])["notes"] == "Note spans lines:\nsecond line of the note"
    assert concepts["218"].display == "Hep B, ped/adol, PF, 0.5mL (Résumé)"  # cp1252 file
    assert _props(concepts["218"])["lastUpdated"] == "2024-01-30"
    with open_source("cvx", DATA / "cvx") as source:
        assert source.info.version == "2024-03-11"  # the latest update


def test_cvx_seven_field_lines() -> None:
    fields = next(
        cvx.records(["03|MMR|measles, mumps and rubella virus vaccine||Active|0|1/2/2020"])
    )
    concept = cvx.concept(fields)
    assert concept.display == "MMR" and _props(concept)["lastUpdated"] == "2020-01-02"


def test_release_from_a_zip_reads_the_same(tmp_path: Path) -> None:
    archive = shutil.make_archive(str(tmp_path / "Loinc_2.77"), "zip", DATA / "loinc")
    assert _read("loinc", Path(archive)) == _read("loinc")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("loinc", "Loinc.csv"),
        ("snomed", "sct2_Concept_Snapshot"),
        ("rxnorm", "RXNCONSO.RRF"),
        ("icd10cm", "ICD-10-CM order"),
        ("cvx", "cvx"),
    ],
)
def test_missing_files_are_named(kind: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not a release")
    with pytest.raises(ReleaseError, match=expected), open_source(kind, tmp_path):
        pass


def test_wrong_table_is_explained(tmp_path: Path) -> None:
    (tmp_path / "Loinc.csv").write_text('"CODE","NAME"\n"1","x"\n')
    with pytest.raises(ReleaseError, match="lacks the columns LOINC_NUM"):
        _read("loinc", tmp_path)
