"""Starting the audit trail in the app's lifespan (the composition root calls this).

::

    key = audit_key(settings.audit_key, settings.data_dir)       # healthbridge.audit.keys
    recorder = await start_audit(repository, key=key, base_url="https://fhir.example.org/fhir")
    ...                                                            # serve; recorder.record(...)
    await recorder.close()                                         # before repository.close()

IHE BALP (https://profiles.ihe.net/ITI/BALP/) AuditEvents for every interaction; see
:mod:`.recorder` and :mod:`.relay`.
"""

from __future__ import annotations

import os
import socket
import uuid

from healthbridge.audit.events import AuditSource
from healthbridge.audit.patients import PatientFinder
from healthbridge.audit.recorder import AuditRecorder
from healthbridge.audit.relay import OutboxRelay
from healthbridge.fhir.definitions import Definitions, load_definitions
from healthbridge.store.repository import Repository


def process_owner() -> str:
    """A name for this server process, unique across restarts (relay job ownership)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def start_audit(
    repository: Repository,
    *,
    key: bytes,
    base_url: str,
    site: str | None = None,
    definitions: Definitions | None = None,
    relay: bool = True,
    flush_seconds: float = 0.15,
    max_buffer: int = 100_000,
) -> AuditRecorder:
    """A running :class:`AuditRecorder` over ``repository.audit``, with the outbox relay unless
    ``relay`` is False. ``base_url`` is the server's FHIR base (the observer of every event);
    ``definitions`` give the Patient compartment (the R4 ones by default)."""
    finder = PatientFinder(definitions or load_definitions())
    source = AuditSource(base_url, site or socket.gethostname())
    outbox = OutboxRelay(repository, key, source, finder, owner=process_owner()) if relay else None
    recorder = AuditRecorder(
        repository.audit,
        key,
        source,
        finder,
        relay=outbox,
        flush_seconds=flush_seconds,
        max_buffer=max_buffer,
    )
    recorder.start()
    return recorder
