"""The sign-in part of ``healthbridge serve --demo``: the demo practitioner resource, the demo
accounts and app (:mod:`healthbridge.auth.demo`), and how to use them, printed."""

from __future__ import annotations

import asyncio

from rich.console import Console

from healthbridge.auth.config import auth_config
from healthbridge.auth.demo import DemoLogins, prepare_demo
from healthbridge.demo import PRACTITIONER, PRACTITIONER_ID
from healthbridge.settings import Settings


async def _prepare(settings: Settings) -> DemoLogins:
    from healthbridge.fhir.definitions import load_definitions
    from healthbridge.fhir.validation import Validator
    from healthbridge.rest.service import FhirService
    from healthbridge.store.sql import open_repository

    repository = await open_repository(settings.database_url())
    try:
        definitions = load_definitions()
        service = FhirService(repository, definitions, Validator(definitions))
        await service.update("Practitioner", PRACTITIONER_ID, dict(PRACTITIONER), None)
        return await prepare_demo(auth_config(settings), repository.records)
    finally:
        await repository.close()


def prepare(settings: Settings, console: Console) -> None:
    logins = asyncio.run(_prepare(settings))
    lines = [
        "Demo sign-in (new passwords every start):",
        *(
            f"  user {name}  password {password}  ({logins.fhir_users[name]})"
            for name, password in logins.passwords.items()
        ),
        f"Demo app {logins.client_id} (public, PKCE). Open in a browser, sign in as "
        "demo-patient and allow:",
        f"  {logins.authorize_url}",
        "The page it returns to shows the curl command that exchanges the code for a token;",
        "then: curl -H 'Authorization: Bearer <access_token>' "
        f"{auth_config(settings).fhir_base}/Patient/demo-patient-1",
    ]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
