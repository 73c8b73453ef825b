"""The authorization server as one object the app builds in its lifespan (SMART App Launch 2,
https://hl7.org/fhir/smart-app-launch/): stores, key ring, Authlib server, pages, endpoints, the
token verifier for the FHIR API, and the background upkeep (key rotation, purging expired
records).

Routes (mounted by ``app.py``; ``/fhir/.well-known/smart-configuration`` must be routed to
Starlette before the FHIR router sees it)::

    GET  /fhir/.well-known/smart-configuration   SMART discovery
    GET  /.well-known/openid-configuration       OpenID Connect discovery
    GET  /auth/jwks                              signing keys
    GET  /auth/authorize, POST /auth/authorize   sign-in / consent, code issued
    POST /auth/login, /auth/login/totp, /auth/logout
    POST /auth/token, /auth/revoke, /auth/introspect   (OPTIONS: CORS preflight)
    POST /auth/register, GET|DELETE /auth/register/{client_id}, POST /auth/launch   (admin)
    GET  /auth/demo/callback                     (demo mode only)
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

from starlette.routing import BaseRoute, Route

from healthbridge.auth.authorize import AuthorizationEndpoint
from healthbridge.auth.config import AuthConfig
from healthbridge.auth.demo import DemoCallback
from healthbridge.auth.discovery import Discovery
from healthbridge.auth.events import AuthEvent, EventSink
from healthbridge.auth.http import preflight
from healthbridge.auth.keys import KeyRing
from healthbridge.auth.login import LoginPages
from healthbridge.auth.patients import PatientDirectory
from healthbridge.auth.registration import AdminApi
from healthbridge.auth.server import AuthServer
from healthbridge.auth.sessions import Sessions
from healthbridge.auth.token_endpoint import Charge, TokenEndpoints
from healthbridge.auth.tokens import TokenVerifier
from healthbridge.fhir.definitions import load_definitions
from healthbridge.fhir.errors import FhirError
from healthbridge.fhir.search.parse import SearchParser
from healthbridge.infra.logging import get_logger
from healthbridge.infra.sealing import Sealer, SealingError
from healthbridge.security.care_team import CareRelationships
from healthbridge.store.instants import Clock, system_clock
from healthbridge.store.repository import Repository

UPKEEP_SECONDS = 300.0
"""How often keys are checked for rotation and expired records purged."""
_log = get_logger("healthbridge.auth")


async def log_event(event: AuthEvent) -> None:
    _log.info(
        f"auth {event.kind}",
        outcome=event.outcome,
        subject=event.subject,
        client_id=event.client_id,
        grant=event.grant,
        address=event.address,
        detail=event.detail or None,
    )


class AuthService:
    def __init__(
        self,
        config: AuthConfig,
        repository: Repository,
        *,
        sealer: Sealer,
        clock: Clock = system_clock,
        events: EventSink = log_event,
        charge: Charge | None = None,
    ) -> None:
        """``sealer`` seals the secrets stored at rest (signing keys, TOTP secrets); ``charge``
        spends one request from a client's token budget (the app passes the process's rate
        limiter)."""
        self.config = config
        records = repository.records
        self.records = records
        self.keys = KeyRing(
            records,
            clock,
            config.key_rotation,
            config.access_lifetime + timedelta(minutes=5),
            sealer=sealer,
        )
        self.server = AuthServer(config, records, clock, self.keys, events, sealer=sealer)
        self.sessions = Sessions(
            records, clock, config.session_lifetime, secure=config.secure_cookies
        )
        care = (
            None
            if config.care_relationship_days is None
            else CareRelationships(repository, days=config.care_relationship_days)
        )
        self.patients = PatientDirectory(repository, SearchParser(load_definitions()), care)
        self._authorize = AuthorizationEndpoint(config, self.server, self.sessions, self.patients)
        self._login = LoginPages(self.server.users, self.sessions, events)
        self._tokens = TokenEndpoints(config, self.server, charge)
        self._discovery = Discovery(config, self.keys)
        self._admin = AdminApi(
            self.verifier,
            self.server.clients,
            self.server.launches,
            self.patients,
            events,
            config.fhir_base,
        )
        self._demo = DemoCallback(config, records)
        self._upkeep: asyncio.Task[None] | None = None
        self._routes: list[BaseRoute] | None = None

    @property
    def verifier(self) -> TokenVerifier:
        """The FHIR API's authenticator."""
        return self.server.verifier

    async def start(self) -> None:
        await self.keys.refresh()
        self._upkeep = asyncio.create_task(self._keep_up(), name="auth-upkeep")

    async def close(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
            with suppress(asyncio.CancelledError):
                await self._upkeep

    async def _keep_up(self) -> None:
        while True:
            await asyncio.sleep(UPKEEP_SECONDS)
            try:
                await self.keys.refresh()
                await self.records.purge_expired_records()
            except FhirError as exc:  # the database is briefly unavailable: next time
                _log.warning("auth upkeep failed", error=str(exc))
            except SealingError as exc:  # a key sealed with a secret key not configured here
                _log.error("auth upkeep failed", error=str(exc))

    def routes(self) -> list[BaseRoute]:
        """The routes to mount (the same objects on every call)."""
        if self._routes is None:
            self._routes = self._make_routes()
        return self._routes

    def _make_routes(self) -> list[BaseRoute]:
        tokens, admin = self._tokens, self._admin
        routes: list[BaseRoute] = [
            Route("/fhir/.well-known/smart-configuration", self._discovery.smart),
            Route("/.well-known/openid-configuration", self._discovery.openid),
            Route("/auth/jwks", self._discovery.jwks),
            Route("/auth/authorize", self._authorize.get, methods=["GET"]),
            Route("/auth/authorize", self._authorize.post, methods=["POST"]),
            Route("/auth/login", self._login.login, methods=["POST"]),
            Route("/auth/login/totp", self._login.totp, methods=["POST"]),
            Route("/auth/logout", self._login.logout, methods=["POST"]),
            Route("/auth/token", tokens.token, methods=["POST"]),
            Route("/auth/revoke", tokens.revoke, methods=["POST"]),
            Route("/auth/introspect", tokens.introspect, methods=["POST"]),
            Route("/auth/register", admin.register, methods=["POST"]),
            Route("/auth/register/{client_id}", admin.read, methods=["GET"]),
            Route("/auth/register/{client_id}", admin.disable, methods=["DELETE"]),
            Route("/auth/launch", admin.launch, methods=["POST"]),
        ]
        routes += [
            Route(path, preflight, methods=["OPTIONS"])
            for path in ("/auth/token", "/auth/revoke", "/auth/introspect", "/auth/jwks")
        ]
        if self.config.demo:
            routes.append(Route("/auth/demo/callback", self._demo.callback, methods=["GET"]))
        return routes
