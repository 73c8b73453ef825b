"""Transaction and batch processing (https://hl7.org/fhir/R4/http.html#transaction).

``POST [base]`` with a Bundle of type ``transaction`` or ``batch``:

* transaction: every write in one database transaction (:mod:`.transaction`); the answer is a
  ``transaction-response`` Bundle, or, when any entry fails, an OperationOutcome naming it and
  nothing written.
* batch: each entry on its own, as if sent alone (:mod:`.replay`); the answer is a
  ``batch-response`` Bundle with each entry's status, failures included
  (``response.outcome``).

Limits (entry count; the body size is checked before the Bundle is parsed) are enforced before
any entry runs. Used by the HTTP interaction (:mod:`healthbridge.rest.interactions.bundle`) and
by ``healthbridge import``:

    processor = BundleProcessor(service, BundleLimits(max_entries=...))
    response = await processor.process(bundle_dict, base_url="http://host/fhir")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from healthbridge.fhir import bundles
from healthbridge.fhir.errors import FhirError, InvalidRequest, MethodNotAllowed
from healthbridge.fhir.types import Resource
from healthbridge.rest.bundle.entries import WRITES, Entry, at, read_entries
from healthbridge.rest.bundle.replay import Dispatch, replay
from healthbridge.rest.bundle.responses import error_entry
from healthbridge.rest.bundle.transaction import Answer, TransactionRun
from healthbridge.rest.service import FhirService

KINDS = ("transaction", "batch")


@dataclass(frozen=True, slots=True)
class BundleLimits:
    max_entries: int = 10_000


class BundleProcessor:
    def __init__(
        self,
        service: FhirService,
        limits: BundleLimits | None = None,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.service = service
        self.limits = limits or BundleLimits()
        self.dispatch = dispatch
        """Answers an entry as a request of its own (the router; set once it exists)."""

    def using(self, service: FhirService) -> BundleProcessor:
        """This processor writing through ``service`` (one request's access-controlled one)."""
        return BundleProcessor(service, self.limits, self.dispatch)

    async def process(
        self,
        bundle: Any,
        *,
        base_url: str = "",
        request: Request | None = None,
        prefer: str = "minimal",
    ) -> Resource:
        """The response Bundle of a transaction or batch ``bundle``. ``request`` (the HTTP
        request that carried it) lets GET entries and batch entries be answered through the
        router; ``prefer`` is the ``Prefer: return=`` of the writes' entries."""
        kind = _kind(bundle)
        entries = read_entries(bundle, kind, base_url, self.limits.max_entries)

        async def answer(entry: Entry) -> dict[str, Any]:
            if self.dispatch is None or request is None:
                return _unanswerable(entry)
            return await replay(self.dispatch, request, entry)

        if kind == "transaction":
            answers = await TransactionRun(self.service, entries, answer, prefer, base_url).run()
        else:
            answers = [
                await self._batch_entry(entry, answer, prefer, base_url) for entry in entries
            ]
        return bundles.bundle(f"{kind}-response", answers, [])

    async def _batch_entry(
        self, entry: Entry, answer: Answer, prefer: str, base_url: str
    ) -> dict[str, Any]:
        """One batch entry on its own: a write is a transaction of that one entry (so it
        behaves exactly as it would in a transaction), a read goes through the router; a
        failure is this entry's answer only (http.html#brules)."""
        if entry.method not in WRITES:
            return await answer(entry)
        try:
            run = TransactionRun(self.service, [entry], answer, prefer, base_url)
            [answered] = await run.run()
        except FhirError as exc:
            return error_entry(exc)
        return answered


def _kind(bundle: Any) -> str:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest(
            "POST to the base URL takes a Bundle of type transaction or batch",
            code="invalid",
            expression="resourceType",
        )
    kind = bundle.get("type")
    if kind not in KINDS:
        raise InvalidRequest(
            f"Bundle.type is {kind!r}; POST to the base URL processes only 'transaction' and "
            "'batch' Bundles (store other Bundles with POST /fhir/Bundle)",
            code="value",
            expression="Bundle.type",
        )
    return str(kind)


def _unanswerable(entry: Entry) -> dict[str, Any]:
    return error_entry(
        at(entry, MethodNotAllowed(f"{entry.method} entries are answered over HTTP only"))
    )
