"""Terminology: code hierarchies and value set contents (https://hl7.org/fhir/R4/terminology-module.html)."""
