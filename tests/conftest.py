"""Suite-wide options.

``HEALTHBRIDGE_TEST_BACKENDS`` (comma list of memory, sqlite, postgresql; default all) deselects
backend-parametrised cases, so CI can run the fast backends first and PostgreSQL on its own
fresh database afterwards (see ``.ci/run``).
"""

from __future__ import annotations

import os

import pytest

KINDS = frozenset({"memory", "sqlite", "postgresql"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = os.environ.get("HEALTHBRIDGE_TEST_BACKENDS")
    if not wanted:
        return
    keep = {k.strip() for k in wanted.split(",")}
    selected, deselected = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        kinds = {v for v in params.values() if isinstance(v, str) and v in KINDS}
        (deselected if kinds and not kinds <= keep else selected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
