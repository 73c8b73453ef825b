"""The authorization server's configuration, derived once from :class:`Settings`.

The issuer (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderMetadata) is the
server's root URL and the FHIR base URL is the audience of every access token
(https://hl7.org/fhir/smart-app-launch/app-launch.html#request-4: ``aud``). Both come from
``HEALTHBRIDGE_PUBLIC_BASE_URL`` (the FHIR base clients see, e.g. behind a proxy) or else from
the bind address and port. A loopback server also answers to its other loopback names
(``localhost``, ``127.0.0.1``, ``[::1]``), so ``aud`` may name any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from healthbridge.settings import Settings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    issuer: str  # e.g. http://127.0.0.1:8080 (no trailing slash)
    fhir_base: str  # e.g. http://127.0.0.1:8080/fhir: the access tokens' audience
    audiences: frozenset[str]  # every FHIR base URL a client may name as ``aud``
    access_lifetime: timedelta = timedelta(minutes=5)
    refresh_lifetime: timedelta = timedelta(days=90)
    code_lifetime: timedelta = timedelta(seconds=60)
    session_lifetime: timedelta = timedelta(minutes=60)
    key_rotation: timedelta = timedelta(days=30)
    lockout_threshold: int = 5
    lockout_duration: timedelta = timedelta(minutes=15)
    jwks_allowed_hosts: frozenset[str] = frozenset()
    jwks_timeout_s: float = 5.0
    jwks_max_bytes: int = 64 * 1024
    jwks_cache_s: int = 300
    demo: bool = False
    care_relationship_days: int | None = 30
    """``user_access = care-team``: practitioners pick among the patients they care for (a
    finished Encounter counts this many days); None (``all``): among every patient."""

    @property
    def secure_cookies(self) -> bool:
        return self.issuer.startswith("https://")

    def url(self, path: str) -> str:
        """An absolute URL of the server (``path`` starts with ``/``)."""
        return self.issuer + path

    @property
    def token_endpoint(self) -> str:
        return self.url("/auth/token")


def _audiences(fhir_base: str) -> frozenset[str]:
    parts = urlsplit(fhir_base)
    host = parts.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    if shown not in LOOPBACK_NAMES:
        return frozenset({fhir_base})
    port = f":{parts.port}" if parts.port else ""
    return frozenset(f"{parts.scheme}://{name}{port}{parts.path}" for name in LOOPBACK_NAMES) | {
        fhir_base
    }


def auth_config(settings: Settings) -> AuthConfig:
    """The configuration the settings describe."""
    fhir_base = settings.fhir_base_url()
    issuer = fhir_base.removesuffix("/fhir")
    allowed = {h.strip().lower() for h in settings.auth_jwks_allowed_hosts.split(",") if h.strip()}
    allowed.update(settings.outbound_allowed_hosts)  # the allow-list of every outbound URL
    return AuthConfig(
        issuer=issuer,
        fhir_base=fhir_base,
        audiences=_audiences(fhir_base),
        access_lifetime=timedelta(minutes=settings.auth_access_token_minutes),
        refresh_lifetime=timedelta(days=settings.auth_refresh_token_days),
        code_lifetime=timedelta(seconds=settings.auth_code_seconds),
        session_lifetime=timedelta(minutes=settings.auth_session_minutes),
        key_rotation=timedelta(days=settings.auth_key_rotation_days),
        lockout_threshold=settings.auth_lockout_threshold,
        lockout_duration=timedelta(minutes=settings.auth_lockout_minutes),
        jwks_allowed_hosts=frozenset(allowed),
        jwks_timeout_s=settings.auth_jwks_timeout_seconds,
        jwks_max_bytes=settings.auth_jwks_max_bytes,
        jwks_cache_s=settings.auth_jwks_cache_seconds,
        demo=settings.demo,
        care_relationship_days=(
            settings.care_relationship_days if settings.user_access == "care-team" else None
        ),
    )
