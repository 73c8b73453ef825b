"""``healthbridge subscriptions ...``: inspect a subscription's delivery state and replay events.

``status <id>`` prints what ``$status`` reports (status, error, events since subscription start,
the last event delivered, consecutive failures, the next attempt) and the events that were given
up (dead letters); ``redeliver <id> --from <n>`` makes every kept event numbered ``n`` or higher
due again, in order (:mod:`healthbridge.subscriptions.replay`). Both work on the database
directly; a running server's delivery workers pick the replayed events up within a second.
Event numbers: https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#event-numbering.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from healthbridge.cli.offline import with_repository
from healthbridge.cli.options import DataDirOpt, DbOpt, console, settings_of
from healthbridge.fhir.errors import FhirError
from healthbridge.store.repository import Repository
from healthbridge.store.subscriptions import Delivery, SubscriptionState
from healthbridge.subscriptions.replay import Replayed, replay

app = typer.Typer(no_args_is_help=True, help="Subscription deliveries: status and replay")
IdArg = Annotated[str, typer.Argument(help="The Subscription id")]
SHOWN = 20


@app.command()
def redeliver(
    subscription_id: IdArg,
    from_event: Annotated[
        int, typer.Option("--from", min=1, help="The first event number to send again")
    ],
    database: DbOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Send events FROM and later again, in order (also dead-lettered ones)."""
    settings = settings_of(database=database, data_dir=data_dir)

    async def work(repository: Repository) -> Replayed:
        return await replay(repository.subscriptions, subscription_id, from_event)

    try:
        done = with_repository(settings, work)
    except FhirError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"Subscription/{done.subscription_id}: {done.redelivered} events due again "
        f"(from {from_event} to {done.events_since_start}); status {done.status}"
    )


@app.command()
def status(subscription_id: IdArg, database: DbOpt = None, data_dir: DataDirOpt = None) -> None:
    """The delivery state of one subscription and its dead-lettered events."""
    settings = settings_of(database=database, data_dir=data_dir)

    async def work(repository: Repository) -> tuple[SubscriptionState | None, list[Delivery]]:
        queue = repository.subscriptions
        state = await queue.status(subscription_id)
        dead: list[Delivery] = []
        since = 1
        while state is not None and len(dead) < SHOWN:
            page = await queue.events(subscription_id, since, limit=500)
            dead += [d for d in page if d.state == "dead"]
            if len(page) < 500:
                break
            since = page[-1].event.number + 1
        return state, dead[:SHOWN]

    state, dead = with_repository(settings, work)
    if state is None:
        console.print(f"[red]Subscription/{subscription_id} has no recorded events[/red]")
        raise typer.Exit(1)
    console.print(
        f"Subscription/{subscription_id}: {state.status}"
        + (f" ({state.error})" if state.error else "")
        + f"\n  events since subscription start: {state.events_since_start}"
        + f"\n  last delivered: {state.last_delivered}; failures in a row: {state.failures}"
        + f"\n  next attempt: {state.next_attempt.isoformat() if state.next_attempt else '-'}"
    )
    if dead:
        table = Table("event", "focus", "attempts", "error")
        for delivery in dead:
            event = delivery.event
            focus = f"{event.focus_type}/{event.focus_id}/_history/{event.focus_version}"
            table.add_row(str(event.number), focus, str(delivery.attempts), delivery.error or "")
        console.print("Dead letters (replay with: healthbridge subscriptions redeliver):")
        console.print(table)
