"""Typed settings for the whole server; every field reads ``HEALTHBRIDGE_<NAME>`` from the
environment. Defaults describe the embedded single node: SQLite under ``./healthbridge-data``."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    # Errors name the setting, never echo its value (keys and passwords are settings too).
    model_config = SettingsConfigDict(
        env_prefix="HEALTHBRIDGE_", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Path("./healthbridge-data")
    database: str | None = Field(
        default=None,
        description="Database URL: sqlite:///path.db or postgresql://user@host:5432/db. "
        "Default: a SQLite file under data_dir.",
    )
    workers: int = Field(default=1, ge=1, le=64)
    demo: bool = False
    no_auth: bool = False
    public_base_url: str | None = Field(
        default=None, description="Base URL clients see (e.g. behind a proxy); default from Host"
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_string_chars: int = Field(default=1024 * 1024, ge=1)
    max_bundle_entries: int = Field(
        default=10_000,
        ge=1,
        description="Most entries in one transaction or batch Bundle (checked before any runs)",
    )
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    log_level: str = "info"
    access_log: bool = True
    db_pool_size: int = Field(default=10, ge=1)
    conditional_delete_multiple: bool = Field(
        default=False,
        description="DELETE [type]?criteria deletes every match (up to 100) instead of "
        "answering 412 when several match",
    )
    search_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often each server process checks for custom SearchParameter changes "
        "made through $reindex (a reindex waits about twice this before it scans)",
    )

    # -- access control (security/access.py, docs/access-control.md) --
    user_access: Literal["care-team", "all"] = Field(
        default="care-team",
        description="What user/ scopes reach: care-team holds a clinician to the records of "
        "the patients they have a care relationship with (users with the admin or "
        "all-patients role excepted); all gives every patient's records",
    )
    care_relationship_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="How long after a finished Encounter its participants keep a care "
        "relationship with its patient (user_access=care-team)",
    )

    # -- rate limits (security/ratelimit.py) --
    rate_limits: bool = Field(
        default=True, description="Per-address and per-client rate limits (docs/limits.md)"
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="memory:// (each process counts on its own) or redis://host:6379/0 "
        "(shared by every process and host)",
    )
    rate_limit_ip: str = Field(
        default="20000/second",
        description="Weighted units per client address (read 1, search and history 5, "
        "write, transaction and operation 10, $export/$import 100)",
    )
    rate_limit_client: str = Field(
        default="5000/second", description="Weighted units per OAuth client on the FHIR API"
    )
    rate_limit_login: str = Field(
        default="10/minute",
        description="POSTs per address to /auth/login, /auth/login/totp and /auth/authorize",
    )
    rate_limit_token: str = Field(
        default="60/minute",
        description="POSTs per address to /auth/token, /auth/revoke and /auth/introspect",
    )
    rate_limit_token_client: str = Field(
        default="30/minute", description="Token requests per client id"
    )
    rate_limit_ip_shared: bool = Field(
        default=False,
        description="Count HEALTHBRIDGE_RATE_LIMIT_IP in the shared storage too (one Redis round "
        "trip per request); off, each process counts it (login, token and client budgets are "
        "always shared)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDR ranges of reverse proxies whose "
        "X-Forwarded-For is believed (empty: the connection's address counts)",
    )

    # -- authorization server (auth/) --
    auth_access_token_minutes: int = Field(
        default=5, ge=1, le=60, description="Lifetime of access tokens and id_tokens"
    )
    auth_refresh_token_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="Lifetime of refresh tokens (offline_access); each use rotates the token",
    )
    auth_code_seconds: int = Field(
        default=60, ge=1, le=600, description="Lifetime of authorization codes (at most 10 min)"
    )
    auth_session_minutes: int = Field(
        default=60, ge=1, le=24 * 60, description="How long a sign-in to /auth/ pages lasts"
    )
    auth_key_rotation_days: int = Field(
        default=30, ge=1, le=365, description="A new token signing key every this many days"
    )
    auth_lockout_threshold: int = Field(
        default=5, ge=1, le=100, description="Failed sign-ins in a row that lock an account"
    )
    auth_lockout_minutes: int = Field(
        default=15, ge=1, le=7 * 24 * 60, description="How long a locked account stays locked"
    )
    auth_jwks_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host[:port] names whose client JWKS URLs may be fetched "
        "even though they are loopback or private addresses (or plain http)",
    )
    auth_jwks_timeout_seconds: float = Field(
        default=5.0, gt=0, le=30, description="Timeout of one client JWKS URL fetch"
    )
    auth_jwks_max_bytes: int = Field(
        default=64 * 1024, ge=1024, le=1024 * 1024, description="Largest client JWKS accepted"
    )
    auth_jwks_cache_seconds: int = Field(
        default=300, ge=0, le=86400, description="How long a fetched client JWKS is reused"
    )

    # -- outbound requests and subscription channels (infra/ssrf.py, docs/subscriptions.md) --
    outbound_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host[:port] names HealthBridge may reach although they are "
        "loopback or private addresses (or plain http): subscription endpoints, client JWKS "
        "URLs (with auth_jwks_allowed_hosts), every other URL it fetches",
    )
    subscription_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Longest one subscription notification may take"
    )
    subscription_max_per_client: int = Field(
        default=100, ge=1, description="Most active or requested subscriptions one client may own"
    )
    subscription_retry_hours: float = Field(
        default=72.0, gt=0, description="How long a notification is retried before it is given up"
    )
    subscription_retry_base_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="First retry delay; doubles per attempt to 1 h"
    )
    subscription_max_failures: int = Field(
        default=10,
        ge=1,
        description="Consecutive failed deliveries that set a subscription to error",
    )
    subscription_retention_hours: float = Field(
        default=168.0,
        gt=0,
        description="How long delivered subscription events stay for $events and replays",
    )
    subscription_ws_token_seconds: float = Field(
        default=300.0,
        ge=10,
        le=3600,
        description="How long a $get-ws-binding-token token may be used to bind a websocket",
    )
    subscription_nats_url: str | None = Field(
        default=None,
        description="NATS server of the message channel (nats://host:4222; needs the nats extra)",
    )
    subscription_redis_url: str | None = Field(
        default=None, description="Redis server of the message channel's streams (redis://...)"
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server of the email channel (unset: no email channel)"
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: str = Field(
        default="starttls", description="starttls, ssl (implicit TLS) or none (loopback only)"
    )
    smtp_user: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_from: str = Field(default="healthbridge@localhost", description="The From address")
    smtp_attach_full_resource: bool = Field(
        default=False,
        description="Attach the notification Bundle to emails of full-resource subscriptions "
        "(off: emails carry ids and event numbers only)",
    )

    # -- missed-dose alerts (subscriptions/missed_doses.py, docs/subscriptions.md) --
    missed_dose_enabled: bool = Field(
        default=True, description="Run the missed-dose scheduler (one server process at a time)"
    )
    missed_dose_scan_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How often scheduled doses are checked"
    )
    missed_dose_grace_minutes: float = Field(
        default=60.0, ge=0, le=1440, description="How late a dose may be recorded before missed"
    )
    missed_dose_lookback_hours: float = Field(
        default=24.0, gt=0, le=168, description="How far back due doses are checked"
    )
    missed_dose_categories: str = Field(
        default="inpatient",
        description="MedicationRequest categories checked (comma-separated medicationrequest-"
        "category codes; empty: every request)",
    )
    missed_dose_timezone: str = Field(
        default="UTC", description="IANA zone of timeOfDay and dates without a time (Europe/Oslo)"
    )

    # -- profiles (docs/packages.md) --
    required_profiles: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Profiles every write of a resource type must conform to, as JSON: "
        '{"Patient": ["http://hl7.org/fhir/uv/ips/StructureDefinition/Patient-uv-ips"]} '
        "(canonical URLs, optionally |version; install them with `healthbridge packages "
        "install`)",
    )

    # -- audit trail (audit/) --
    audit_key: str | None = Field(
        default=None,
        repr=False,
        min_length=32,
        description="HMAC key of the audit trail's hash chain (at least 32 characters; the same "
        "for every server process and `healthbridge audit verify`). Default: audit.key under "
        "data_dir, created on first start",
    )

    # -- secrets at rest (infra/sealing.py, docs/authorization.md#secrets-at-rest) --
    secret_key: str | None = Field(
        default=None,
        repr=False,
        min_length=32,
        description="Key that seals the secrets stored in the database (token signing keys, "
        "TOTP secrets) with AES-256-GCM (at least 32 characters; the same for every server "
        "process: set it when PostgreSQL is shared by several hosts). Default: secret.key "
        "under data_dir, created on first start",
    )
    secret_keys_previous: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Comma-separated older secret keys, still accepted for opening sealed "
        "values until `healthbridge secrets rotate` has re-sealed them with secret_key",
    )

    @field_validator(
        "rate_limit_ip",
        "rate_limit_client",
        "rate_limit_login",
        "rate_limit_token",
        "rate_limit_token_client",
    )
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            items = limits.parse_many(value)
        except ValueError:
            items = []
        if not items or any(item.amount < 1 for item in items):
            raise ValueError(f"{value!r} is not a rate such as 100/second or 10/minute;1000/day")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            for item in value:
                ipaddress.ip_network(str(item).strip(), strict=False)  # ValueError if not
        return value

    @field_validator("secret_keys_previous", mode="before")
    @classmethod
    def _previous_keys(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [str(v).strip() for v in value if str(v).strip()]
            if any(len(v) < 32 for v in value):
                raise ValueError("secret_keys_previous: every key must be at least 32 characters")
        return value

    @field_validator("outbound_allowed_hosts", mode="before")
    @classmethod
    def _outbound_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [str(v).strip().lower() for v in value if str(v).strip()]
        return value

    @field_validator("smtp_security")
    @classmethod
    def _smtp_security(cls, value: str) -> str:
        if value not in {"starttls", "ssl", "none"}:
            raise ValueError("smtp_security must be one of starttls, ssl, none")
        return value

    @field_validator("missed_dose_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise ValueError(f"missed_dose_timezone: {value!r} is not an IANA zone") from None
        return value

    @field_validator("required_profiles")
    @classmethod
    def _profiles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for resource_type, profiles in value.items():
            if not re.fullmatch(r"[A-Z][A-Za-z]{0,63}", resource_type):
                raise ValueError(
                    f"required_profiles: {resource_type!r} is not a resource type name "
                    '(give JSON such as {"Patient": ["http://example.org/StructureDefinition/p"]})'
                )
            if not all(isinstance(p, str) and p.strip() and " " not in p for p in profiles):
                raise ValueError(
                    f"required_profiles: the profiles of {resource_type} must be canonical URLs"
                )
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be one of debug, info, warning, error")
        return value

    def database_url(self) -> str:
        """The configured database URL, or the default SQLite file under ``data_dir``."""
        if self.database:
            return self.database
        return f"sqlite:///{(self.data_dir / 'healthbridge.db').resolve()}"

    def fhir_base_url(self) -> str:
        """The FHIR base URL the server is known by: ``public_base_url``, else this host and
        port (a wildcard bind address is named by loopback), e.g. http://127.0.0.1:8080/fhir.
        It is the access tokens' audience and the audit trail's observer."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
            host = "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/fhir"

    def host_is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
