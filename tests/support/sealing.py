"""A sealer for tests that build the authorization server's parts by hand (the app builds its
own from the settings: infra/secret_keys.py)."""

from __future__ import annotations

from healthbridge.infra.sealing import Sealer

TEST_KEY = "a test secret key that is long enough"
SEALER = Sealer.from_secrets(TEST_KEY)
