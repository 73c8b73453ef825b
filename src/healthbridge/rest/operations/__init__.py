"""FHIR operations framework (https://hl7.org/fhir/R4/operations.html): a registry plus one
module per ``$operation``."""
