"""A synthetic LOINC release of any size, in the CSV release's layout (https://loinc.org/downloads/).

Made-up terms built from a vocabulary of plausible analytes, specimens and methods, so text
filters behave as on the real table (shared words, many matches for common ones). Used by the
resumability tests and by ``python -m bench terminology``. Not LOINC content.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

COLUMNS = (
    "LOINC_NUM", "COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP",
    "CLASS", "VersionLastChanged", "CHNG_TYPE", "DefinitionDescription", "STATUS",
    "CONSUMER_NAME", "CLASSTYPE", "FORMULA", "EXMPL_ANSWERS", "SURVEY_QUEST_TEXT",
    "SURVEY_QUEST_SRC", "UNITSREQUIRED", "RELATEDNAMES2", "SHORTNAME", "ORDER_OBS",
    "HL7_FIELD_SUBFIELD_ID", "EXTERNAL_COPYRIGHT_NOTICE", "EXAMPLE_UNITS", "LONG_COMMON_NAME",
    "EXAMPLE_UCUM_UNITS", "STATUS_REASON", "STATUS_TEXT", "CHANGE_REASON_PUBLIC",
    "COMMON_TEST_RANK", "COMMON_ORDER_RANK", "HL7_ATTACHMENT_STRUCTURE",
    "EXTERNAL_COPYRIGHT_LINK", "PanelType", "AskAtOrderEntry", "AssociatedObservations",
    "VersionFirstReleased", "ValidHL7AttachmentRequest", "DisplayName",
)  # fmt: skip
ANALYTES = (
    "Glucose", "Sodium", "Potassium", "Chloride", "Bicarbonate", "Urea nitrogen", "Creatinine",
    "Calcium", "Magnesium", "Phosphate", "Albumin", "Protein", "Bilirubin", "Alkaline phosphatase",
    "Alanine aminotransferase", "Aspartate aminotransferase", "Cholesterol", "Triglyceride",
    "Hemoglobin", "Hematocrit", "Platelets", "Leukocytes", "Erythrocytes", "Ferritin", "Iron",
    "Transferrin", "Thyrotropin", "Thyroxine", "Cortisol", "Insulin", "Lactate", "Ammonia",
    "Troponin I", "Troponin T", "Natriuretic peptide B", "C reactive protein", "Procalcitonin",
    "Lipase", "Amylase", "Urate", "Vitamin D", "Cobalamin", "Folate", "Prolactin", "Estradiol",
    "Testosterone", "Progesterone", "Choriogonadotropin", "Digoxin", "Vancomycin", "Gentamicin",
    "Lithium", "Ethanol", "Cocaine", "Amphetamine", "Cannabinoids", "Opiates",
    "Hepatitis B virus", "Hepatitis C virus", "HIV 1", "Influenza virus A",
    "Streptococcus pyogenes", "SARS coronavirus 2",
)  # fmt: skip
SYSTEMS = (
    ("Ser/Plas", "Serum or Plasma"), ("Bld", "Blood"), ("Urine", "Urine"),
    ("CSF", "Cerebral spinal fluid"),
    ("BldA", "Arterial blood"), ("BldV", "Venous blood"), ("Saliva", "Saliva"), ("Stool", "Stool"),
)  # fmt: skip
PROPERTIES = (
    ("MCnc", "Mass/volume"), ("SCnc", "Moles/volume"), ("ACnc", "Units/volume"),
    ("NCnc", "Number/volume"), ("PrThr", "Presence"), ("MRat", "Mass/time"),
)  # fmt: skip
METHODS = (
    "",
    "",
    "",
    "Immunoassay",
    "Electrophoresis",
    "Probe.amp.tar",
    "Calculated",
    "Test strip",
)
TIMES = (("Pt", ""), ("24H", "24 hour"), ("XXX^post dose", "post dose"))
CLASSES = ("CHEM", "HEM/BC", "DRUG/TOX", "MICRO", "SERO", "UA")


def term_row(number: int, rng: random.Random) -> dict[str, str]:
    analyte = rng.choice(ANALYTES)
    system, system_name = rng.choice(SYSTEMS)
    prop, prop_name = rng.choice(PROPERTIES)
    time, time_name = rng.choice(TIMES)
    method = rng.choice(METHODS)
    scale = "Ord" if prop == "PrThr" else "Qn"
    name = f"{analyte} [{prop_name}] in {system_name}"
    name += f" by {method}" if method else ""
    name += f" --{time_name}" if time_name else ""
    return {
        "LOINC_NUM": f"{number}-{number % 10}",
        "COMPONENT": analyte,
        "PROPERTY": prop,
        "TIME_ASPCT": time,
        "SYSTEM": system,
        "SCALE_TYP": scale,
        "METHOD_TYP": method,
        "CLASS": rng.choice(CLASSES),
        "CLASSTYPE": "1",
        "STATUS": "DEPRECATED" if rng.random() < 0.05 else "ACTIVE",
        "VersionLastChanged": "2.77",
        "SHORTNAME": f"{analyte[:10]} {system}-{prop}",
        "LONG_COMMON_NAME": name,
    }


def write_loinc(directory: Path, count: int, seed: int = 7) -> Path:
    """Write ``LoincTable/Loinc.csv`` with ``count`` terms and a component hierarchy (one ``LP``
    part per analyte under one root) into ``directory``; returns ``directory``."""
    rng = random.Random(seed)
    table = directory / "LoincTable"
    table.mkdir(parents=True, exist_ok=True)
    parts = {analyte: f"LP{1000 + i}-{i % 10}" for i, analyte in enumerate(ANALYTES)}
    hierarchy = [("LP0000-0", "1", "", "LP0000-0", "Laboratory")]
    hierarchy += [("LP0000-0", "1", "LP0000-0", code, name) for name, code in parts.items()]
    with (table / "Loinc.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, COLUMNS, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writeheader()
        for number in range(10_000, 10_000 + count):
            row = term_row(number, rng)
            writer.writerow({column: row.get(column, "") for column in COLUMNS})
            part = parts[row["COMPONENT"]]
            hierarchy.append((f"LP0000-0.{part}", "1", part, row["LOINC_NUM"], ""))
    accessory = directory / "AccessoryFiles" / "ComponentHierarchyBySystem"
    accessory.mkdir(parents=True, exist_ok=True)
    with (accessory / "ComponentHierarchyBySystem.csv").open("w", newline="") as file:
        writer2 = csv.writer(file, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer2.writerow(("PATH_TO_ROOT", "SEQUENCE", "IMMEDIATE_PARENT", "CODE", "CODE_TEXT"))
        writer2.writerows(hierarchy)
    return directory
