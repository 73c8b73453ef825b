"""Topic-based and classic Subscriptions and the built-in alert topics (issue 7).

Spec: the R4 Subscriptions Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/) and the
classic R4 Subscription resource (https://hl7.org/fhir/R4/subscription.html).
"""
