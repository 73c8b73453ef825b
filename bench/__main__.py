"""``python -m bench http`` (REST throughput, side by side with a bare app and sekmet-fhir),
``python -m bench validation`` (in-process validation throughput) or ``python -m bench
profiles`` (profile validation: IPS, Genomics Reporting, Synthea vital signs) or ``python -m bench
search`` (search latency over >= 1M Synthea-shaped resources on SQLite and PostgreSQL) or
``python -m bench load`` (the 100 Synthea patients as transaction Bundles over HTTP, beside
sekmet-fhir) or ``python -m bench auth`` (the cost of authorization against ``--no-auth``, and
the token endpoint's throughput for backend services) or ``python -m bench terminology`` (loading a
100,000-concept LOINC-format release, then $lookup, $validate-code and $expand latency) or
``python -m bench subscriptions`` (notifications of 100 subscriptions under a steady write load:
delivery rate, commit-to-delivery latency, write throughput with and without them)."""

from __future__ import annotations

import sys

BENCHMARKS = (
    "http",
    "validation",
    "profiles",
    "search",
    "load",
    "auth",
    "terminology",
    "subscriptions",
)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: python -m bench {{{'|'.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        raise SystemExit(2)
    which = sys.argv.pop(1)
    if which == "http":
        from bench import http_core

        http_core.main()
    elif which == "validation":
        from bench import validation

        validation.main()
    elif which == "profiles":
        from bench import profile_validation

        profile_validation.main()
    elif which == "auth":
        from bench import auth_cost

        auth_cost.main()
    elif which == "terminology":
        from bench import terminology

        terminology.main()
    elif which == "subscriptions":
        from bench import subscriptions_load

        subscriptions_load.main()
    elif which == "load":
        from bench import synthea_load

        synthea_load.main()
    else:
        from bench import search_scale

        search_scale.main()


if __name__ == "__main__":
    main()
