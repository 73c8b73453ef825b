"""The reference point for the read benchmark: a bare Starlette app returning fixed Patient bytes
with the same headers HealthBridge sends, served by the same Granian."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ.get("BARE_BODY_FILE", "/dev/null")).read_bytes()


async def patient(request: Request) -> Response:
    return Response(
        BODY,
        media_type="application/fhir+json; charset=utf-8",
        headers={"ETag": 'W/"1"', "Cache-Control": "no-store"},
    )


app = Starlette(routes=[Route("/fhir/Patient/{id}", patient)])
