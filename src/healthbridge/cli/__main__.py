"""``python -m healthbridge.cli``: the same as the ``healthbridge`` command."""

from __future__ import annotations

from healthbridge.cli import main

main()
