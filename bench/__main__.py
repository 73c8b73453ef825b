"""``python -m bench http`` (REST throughput, side by side with a bare app and sekmet-fhir) or
``python -m bench validation`` (in-process validation throughput)."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("http", "validation"):
        print("usage: python -m bench {http|validation} [options]", file=sys.stderr)
        raise SystemExit(2)
    which = sys.argv.pop(1)
    if which == "http":
        from bench import http_core

        http_core.main()
    else:
        from bench import validation

        validation.main()


if __name__ == "__main__":
    main()
