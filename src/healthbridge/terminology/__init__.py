"""Large code systems loaded from their publishers' release files.

https://hl7.org/fhir/R4/terminology-service.html: LOINC (:mod:`.loinc`), SNOMED CT
(:mod:`.snomed`, :mod:`.snomed_release`), RxNorm (:mod:`.rxnorm`), ICD-10-CM (:mod:`.icd10cm`)
and CVX (:mod:`.cvx`) parsers turn release files into
:class:`~healthbridge.fhir.terminology.concepts.Concept` streams; :mod:`.loader` writes them
through the :class:`~healthbridge.store.terminology.TerminologyStore` protocol, resumably.
The parsers are pure over lines and rows; opening files (:mod:`.release`) and joining files too
large for memory (:mod:`.workspace`) happen at the edge.
"""
