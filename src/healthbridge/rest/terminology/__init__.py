"""The terminology service (https://hl7.org/fhir/R4/terminology-service.html): $lookup,
$validate-code, $subsumes, $expand, $translate and TerminologyCapabilities over every source of
codes (loaded code systems, stored CodeSystem resources, the R4 core content)."""
