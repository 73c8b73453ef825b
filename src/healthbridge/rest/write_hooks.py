"""Per-type write hooks: what features add to the checks of a write, without rest importing them.

https://hl7.org/fhir/R4/http.html#create and #update. Every write the FHIR service layer takes
(create, update, conditional create and update, PATCH, transaction and batch entries) is checked
by :meth:`healthbridge.rest.service.FhirService.check_write` after the base and profile
validation; a feature registers a :class:`WriteHook` for the resource types it cares about
(``app.py`` does it: rest never imports a feature). A hook's ``check`` raises a
:class:`~healthbridge.fhir.errors.FhirError` to refuse the write (mapped to an OperationOutcome
like any other), and its ``written`` runs after the commit with the request's access context.

A hook's ``check`` may run inside an open unit of work (:func:`in_unit_of_work`), where it
must not write to the database; a transaction with conditional entries runs each entry's
``prepare`` first, outside its unit of work, for what must not wait there (network lookups).

A hook may hand the client something once, in the answer to the request that made the write
(a subscription's signing secret): :func:`add_response_header` during ``written``; the router
adds what was collected to the response (:func:`collecting`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from healthbridge.fhir.types import Resource
from healthbridge.security.context import AccessContext
from healthbridge.store.repository import StoredResource

_HEADERS: ContextVar[list[tuple[str, str]] | None] = ContextVar("write_headers", default=None)
_IN_UNIT: ContextVar[bool] = ContextVar("write_hook_in_unit_of_work", default=False)


class WriteHook(Protocol):
    async def prepare(self, resource: Resource, access: AccessContext) -> None:
        """Before a unit of work that will ``check`` ``resource``: the slow part of the check
        (a network lookup), so that ``check`` can reuse its answer inside the unit instead
        of waiting on the network while SQLite's only writer is held. Raises as ``check``."""
        ...

    async def check(self, resource: Resource, access: AccessContext) -> None:
        """Refuse ``resource`` (raise a FhirError) before it is written by ``access``."""
        ...

    async def written(self, stored: StoredResource, access: AccessContext) -> None:
        """``stored`` (a new version, or a delete) was committed by ``access``."""
        ...


class WriteHooks:
    """The hooks of one server, by resource type, in registration order."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[WriteHook]] = {}

    def register(self, resource_type: str, hook: WriteHook) -> None:
        self._hooks.setdefault(resource_type, []).append(hook)

    def __contains__(self, resource_type: str) -> bool:
        return resource_type in self._hooks

    async def prepare(self, resource_type: str, resource: Resource, access: AccessContext) -> None:
        for hook in self._hooks.get(resource_type, ()):
            await hook.prepare(resource, access)

    async def check(self, resource_type: str, resource: Resource, access: AccessContext) -> None:
        for hook in self._hooks.get(resource_type, ()):
            await hook.check(resource, access)

    async def written(self, stored: Sequence[StoredResource | None], access: AccessContext) -> None:
        for one in stored:
            if one is not None:
                for hook in self._hooks.get(one.resource_type, ()):
                    await hook.written(one, access)


def add_response_header(name: str, value: str) -> None:
    """Add a header to the response of the request being answered (ignored outside one)."""
    headers = _HEADERS.get()
    if headers is not None:
        headers.append((name, value))


@contextmanager
def collecting() -> Iterator[list[tuple[str, str]]]:
    """Collect the headers hooks add while the request is answered."""
    headers: list[tuple[str, str]] = []
    token = _HEADERS.set(headers)
    try:
        yield headers
    finally:
        _HEADERS.reset(token)


@contextmanager
def inside_unit_of_work() -> Iterator[None]:
    """Mark the checks run inside as running in an open unit of work (a conditional write's or
    a PATCH's locks held): on SQLite that unit holds the only writer, so a hook must not write
    to the database there (it would wait for the unit, which waits for it)."""
    token = _IN_UNIT.set(True)
    try:
        yield
    finally:
        _IN_UNIT.reset(token)


def in_unit_of_work() -> bool:
    return _IN_UNIT.get()
