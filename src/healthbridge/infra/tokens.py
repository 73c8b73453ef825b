"""Random secrets and their stored form, for every feature that hands one out (OAuth codes,
refresh tokens and sessions in auth/, subscription signing secrets and websocket binding tokens
in subscriptions/): the secret goes to the client once; the server keeps its SHA-256."""

from __future__ import annotations

import hashlib
import secrets


def digest(secret: str) -> str:
    """The SHA-256 of ``secret`` as hex: the record key or stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(bytes_: int = 32) -> str:
    """A random URL-safe secret (256 bits by default)."""
    return secrets.token_urlsafe(bytes_)
