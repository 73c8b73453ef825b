"""Typed settings for the whole server; every field reads ``HEALTHBRIDGE_<NAME>`` from the
environment. Defaults describe the embedded single node: SQLite under ``./healthbridge-data``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEALTHBRIDGE_", extra="ignore")

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

    def host_is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
