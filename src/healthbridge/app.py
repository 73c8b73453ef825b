"""The composition root: ``create_app(settings)`` builds the whole server from Settings.

Nothing imports this module except the CLI and tests. The lifespan opens the repository (the SQL
backend chosen by the database URL, unless a repository is injected), builds the FHIR service and
mounts the FHIR routes; ``/healthz``, ``/readyz`` and ``/metrics`` are served beside ``/fhir``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from healthbridge import __version__
from healthbridge.audit.keys import audit_key
from healthbridge.audit.recorder import AuditRecorder
from healthbridge.audit.startup import start_audit
from healthbridge.auth.audit_events import audit_sink
from healthbridge.auth.config import auth_config
from healthbridge.auth.discovery import capability_security
from healthbridge.auth.service import AuthService, log_event
from healthbridge.fhir import ucum
from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.fhir.errors import FhirError, Issue, MethodNotAllowed, Unavailable
from healthbridge.fhir.search.parse import SearchLimits, SearchParser
from healthbridge.fhir.validation import Validator
from healthbridge.infra.logging import configure_logging, get_logger
from healthbridge.infra.observability import Metrics, ObservabilityMiddleware
from healthbridge.infra.sealing import Sealer
from healthbridge.infra.secret_keys import load_sealer
from healthbridge.jobs.reindex import ReindexRunner
from healthbridge.jobs.search_registry import SearchRegistry
from healthbridge.rest.bundle import BundleLimits, BundleProcessor
from healthbridge.rest.capabilities import Capabilities
from healthbridge.rest.context import RestContext
from healthbridge.rest.errors import error_response, internal_error_response, outcome_response
from healthbridge.rest.http import BASE_PATH, PREFIX, HttpLimits
from healthbridge.rest.operations import reindex, validate
from healthbridge.rest.operations.registry import OperationRegistry
from healthbridge.rest.profiles import ProfileCatalog, ProfileRules
from healthbridge.rest.routes import Router
from healthbridge.rest.service import FhirService
from healthbridge.rest.terminology import operations as terminology
from healthbridge.rest.terminology.capabilities import TerminologyCapabilities
from healthbridge.rest.write_hooks import WriteHooks
from healthbridge.security.access import AccessPolicy
from healthbridge.security.care_team import care_relationships
from healthbridge.security.context import Authenticator
from healthbridge.security.ratelimit import RateLimitConfig, RateLimiter
from healthbridge.security.ratelimit_middleware import RateLimitMiddleware, parse_networks
from healthbridge.settings import Settings
from healthbridge.store.repository import Repository
from healthbridge.subscriptions.feature import SubscriptionsFeature

RepositoryFactory = Callable[[], Awaitable[Repository]]
_log = get_logger("healthbridge.app")


def _operations(runner: ReindexRunner) -> OperationRegistry:
    """The explicit list of operations this server offers."""
    registry = OperationRegistry()
    registry.register(validate.OPERATION)
    for operation in reindex.operations(runner):
        registry.register(operation)
    return registry


def _sql_factory(settings: Settings) -> RepositoryFactory:
    async def factory() -> Repository:
        from healthbridge.store.sql import open_repository

        return await open_repository(settings.database_url(), pool_size=settings.db_pool_size)

    return factory


def _fhir_router(
    settings: Settings,
    repository: Repository,
    registry: SearchRegistry,
    runner: ReindexRunner,
    *,
    authenticator: Authenticator | None = None,
    limiter: RateLimiter | None = None,
    recorder: AuditRecorder | None = None,
    security: dict[str, Any] | None = None,
    profiles: ProfileRules | None = None,
    subscriptions: SubscriptionsFeature | None = None,
) -> Router:
    """The FHIR API. ``authenticator`` None serves every request unrestricted (``--no-auth``);
    otherwise each request runs over its access-controlled repository (security/access.py).
    ``security`` is the CapabilityStatement's ``rest.security`` (the SMART endpoints);
    ``profiles`` validates writes against profiles (rest/profiles); ``subscriptions`` adds its
    Subscription write checks (rest/write_hooks.py), operations and topics."""
    definitions = registry.core
    validator = Validator(definitions, max_string_length=settings.max_string_chars)
    limits = HttpLimits(
        max_body_bytes=settings.max_body_bytes,
        default_page_size=settings.default_page_size,
        max_page_size=settings.max_page_size,
        public_base_url=settings.public_base_url,
        conditional_delete_multiple=settings.conditional_delete_multiple,
    )
    search = SearchParser(
        definitions,
        SearchLimits(
            default_count=min(settings.default_page_size, settings.max_page_size),
            max_count=settings.max_page_size,
        ),
    )
    registry.on_search_change(lambda current: setattr(search, "definitions", current))
    hooks = _write_hooks(*([subscriptions] if subscriptions is not None else []))
    service = FhirService(repository, definitions, validator, search, profiles, hooks)
    terminology_service = terminology.TerminologyService(repository, search)
    ctx = RestContext(
        service=service,
        limits=limits,
        software_version=__version__,
        search=search,
        refresh_search=lambda: registry.refresh(repository.jobs),
        bundles=BundleProcessor(service, BundleLimits(max_entries=settings.max_bundle_entries)),
        audit=repository.audit,
        terminology=terminology_service.resolver,
    )
    operations = _operations(runner)
    for operation in terminology.operations(terminology_service):
        operations.register(operation)
    for operation in subscriptions.operations() if subscriptions is not None else ():
        operations.register(operation)
    terminology_capabilities = TerminologyCapabilities(terminology_service, __version__)
    capabilities = Capabilities(
        ctx,
        operations,
        security,
        terminology_capabilities.handle,
        profiles.supported if profiles is not None else None,
        subscriptions.capability_extensions if subscriptions is not None else None,
    )
    registry.on_search_change(lambda _: capabilities.refresh())
    if profiles is not None:
        profiles.catalog.on_change(capabilities.refresh)
    if subscriptions is not None:
        subscriptions.catalog.on_change(capabilities.refresh)
    policy = AccessPolicy(
        search,
        private_owners=subscriptions.ownership if subscriptions is not None else None,
        care=care_relationships(settings.user_access, repository, settings.care_relationship_days),
    )
    return Router(
        ctx,
        operations,
        capabilities.handle,
        authenticator=authenticator,
        policy=policy,
        limiter=limiter,
        recorder=recorder,
        websockets=subscriptions.websockets() if subscriptions is not None else None,
    )


async def _keep_fresh(registry: SearchRegistry, repository: Repository, every: float) -> None:
    """Follow custom SearchParameter changes made by any server process (search_registry)."""
    while True:
        await asyncio.sleep(every)
        try:
            await registry.refresh(repository.jobs)
        except FhirError as exc:  # the database is briefly unavailable: try again later
            _log.warning("search registry refresh failed", error=str(exc))


async def _start_profiles(
    settings: Settings, repository: Repository, definitions: Definitions
) -> ProfileRules:
    """The profiles stored on the server, loaded; a required profile the server does not know
    stops the start (rest/profiles/rules.py says why)."""
    catalog = ProfileCatalog(repository, definitions)
    await catalog.load()
    rules = ProfileRules(catalog, settings.required_profiles)
    rules.verify()
    return rules


def _write_hooks(*features: SubscriptionsFeature) -> WriteHooks:
    """The features' checks of writes (rest/write_hooks.py), in the order given."""
    hooks = WriteHooks()
    for feature in features:
        feature.register(hooks)
    return hooks


SMART_CONFIGURATION = PREFIX + ".well-known/smart-configuration"


async def _start_auth(
    settings: Settings,
    repository: Repository,
    app: Starlette,
    recorder: AuditRecorder,
    limiter: RateLimiter | None,
    sealer: Sealer,
) -> AuthService | None:
    """The authorization server (auth/) with its routes mounted, its sign-in and token events
    audited; None with ``--no-auth``. Its token verifier is the FHIR API's authenticator."""
    if settings.no_auth:
        return None
    events = audit_sink(recorder, log_event)
    charge = None
    if limiter is not None:

        async def charge(client_id: str) -> None:
            await limiter.check_client(client_id, "token")

    auth = AuthService(
        auth_config(settings), repository, sealer=sealer, events=events, charge=charge
    )
    await auth.start()
    app.router.routes.extend(auth.routes())
    return auth


def _sealer(settings: Settings) -> Sealer:
    """Seals the secrets kept in the database (infra/sealing.py) with the secret key; every
    server process needs the same one (infra/secret_keys.py)."""
    if settings.secret_key is None and settings.database_url().startswith("postgresql"):
        _log.warning(
            "the secret key is secret.key under the data directory: with servers on several "
            "hosts, give them all the same HEALTHBRIDGE_SECRET_KEY"
        )
    return load_sealer(settings.secret_key, settings.secret_keys_previous, settings.data_dir)


async def _stop_auth(auth: AuthService, app: Starlette) -> None:
    await auth.close()
    for route in auth.routes():
        app.router.routes.remove(route)


class _Entry:
    """The outermost ASGI app: ``/fhir`` (system search) and paths under ``/fhir/`` (HTTP and
    websockets) go straight to the FHIR router (which maps its own errors), everything else
    (health, metrics, lifespan) to Starlette. Skipping Starlette's routing and exception layers
    on the FHIR path halves the cost of a cached read.
    """

    def __init__(self, starlette: Starlette) -> None:
        self.starlette = starlette
        self.fhir: Router | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.fhir is not None
            and scope["type"] in ("http", "websocket")
            and (scope["path"].startswith(PREFIX) or scope["path"] == BASE_PATH)
            and scope["path"] != SMART_CONFIGURATION  # discovery is the auth server's route
        ):
            await self.fhir(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
    code = "not-found" if exc.status_code == 404 else "processing"
    text = f"No endpoint at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return outcome_response(exc.status_code, [Issue("error", code, text)])


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    settings: Settings, *, repository_factory: RepositoryFactory | None = None
) -> ASGIApp:
    """Build the ASGI app. ``repository_factory`` lets tests inject a backend."""
    configure_logging(settings.log_level)
    factory = repository_factory or _sql_factory(settings)
    metrics = Metrics()
    state: dict[str, Repository] = {}
    entry: _Entry

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The secret key first: a bad one stops the start before anything opens.
        sealer, repository = _sealer(settings), await factory()
        state["repository"] = repository
        # Build the UCUM unit registry (about 1.5 s) now, not on the first quantity written.
        await asyncio.to_thread(ucum.conversion, "mg")
        registry = SearchRegistry(load_definitions())
        await registry.refresh(repository.jobs)
        registry.on_index_change(repository.use_definitions)
        refresh = settings.search_refresh_seconds
        runner = ReindexRunner(
            repository.jobs, repository.reindexer, registry, barrier_seconds=refresh * 2.5
        )
        recorder = await start_audit(
            repository,
            key=audit_key(settings.audit_key, settings.data_dir),
            base_url=settings.fhir_base_url(),
            definitions=registry.core,
        )
        auth = await _start_auth(settings, repository, app, recorder, limiter, sealer)
        entry.fhir = _fhir_router(
            settings,
            repository,
            registry,
            runner,
            authenticator=auth.verifier if auth is not None else None,
            limiter=limiter,
            recorder=recorder,
            security=capability_security(auth.config) if auth is not None else None,
            profiles=(profiles := await _start_profiles(settings, repository, registry.core)),
            subscriptions=(
                subscriptions := SubscriptionsFeature(
                    settings,
                    repository,
                    registry.core,
                    recorder,
                    revocations=auth.verifier if auth is not None else None,
                    sealer=sealer,
                )
            ),
        )
        background = [
            asyncio.create_task(_keep_fresh(registry, repository, refresh), name="registry"),
            asyncio.create_task(runner.resume(), name="reindex-resume"),
            asyncio.create_task(profiles.catalog.keep_fresh(refresh), name="profiles"),
            *subscriptions.start(),
        ]
        gc.freeze()  # the R4 definitions live for the whole process: keep them out of GC scans
        _log.info("started", database=settings.database_url().split("@")[-1].split("?")[0])
        try:
            yield
        finally:
            entry.fhir = None
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.gather(runner.close(), subscriptions.close())
            if auth is not None:
                await _stop_auth(auth, app)
            await recorder.close()  # the last buffered events are written before it ends
            await repository.close()

    async def readyz(request: Request) -> Response:
        repository = state.get("repository")
        try:
            if repository is None:
                raise Unavailable("starting")
            await repository.ping()
        except FhirError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    app = Starlette(
        routes=[
            Route("/healthz", _healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )

    def error_body(request_id: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        response = internal_error_response(request_id)
        return response.status_code, response.raw_headers, bytes(response.body)

    entry = _Entry(app)
    limiter = build_rate_limiter(settings)  # one per process: the FHIR router shares it
    limited: ASGIApp = entry
    if limiter is not None:
        proxies = parse_networks(settings.trusted_proxies)
        limited = RateLimitMiddleware(entry, limiter, trusted_proxies=proxies)
    return ObservabilityMiddleware(
        limited, metrics=metrics, error_body=error_body, access_log=settings.access_log
    )


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The process's rate limiter from settings (None when ``rate_limits`` is off)."""
    if not settings.rate_limits:
        return None
    config = RateLimitConfig(
        storage=settings.rate_limit_storage,
        ip=settings.rate_limit_ip,
        client=settings.rate_limit_client,
        login=settings.rate_limit_login,
        token=settings.rate_limit_token,
        token_client=settings.rate_limit_token_client,
        shared_ip=settings.rate_limit_ip_shared,
    )
    return RateLimiter(config)


def create_app_from_env() -> ASGIApp:
    """Factory for Granian workers: settings come from HEALTHBRIDGE_* variables."""
    return create_app(Settings())
