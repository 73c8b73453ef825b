"""The SMART on FHIR / OAuth 2.0 / OpenID Connect authorization server (issue 5)."""
