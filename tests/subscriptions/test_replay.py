"""Replaying events: ``$redeliver`` (administrators only) and ``healthbridge subscriptions
redeliver``/``status`` on the database directly.

Event numbers: https://hl7.org/fhir/uv/subscriptions-backport/notifications.html#event-numbering.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from healthbridge.cli import app as cli
from healthbridge.store.sql import open_repository
from healthbridge.store.subscriptions import Batch, NewEvent
from tests.auth.conftest import Harness
from tests.subscriptions.api import (
    USER_SCOPES,
    Inbox,
    bearer,
    harness,
    observation,
    status_of,
    subscription,
    token,
)
from tests.support.databases import sqlite_url

FAST: dict[str, Any] = {"subscription_retry_base_seconds": 0.05}


def _numbers(inbox: Inbox, first: int = 1) -> list[str]:
    return [
        status_of(n)["events"][0]["event-number"]["valueString"]
        for n in inbox.notifications()[first:]
    ]


def _wait_state(h: Harness, id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = h.run(h.repo.subscriptions.status(id))
        if state is not None and state.status == status:
            return
        time.sleep(0.01)
    raise AssertionError(f"Subscription/{id} never became {status}: {state}")


def test_redeliver_after_the_endpoint_failed_replays_in_order(tmp_path: Path) -> None:
    """The receiver fails until the subscription goes to error; once it works again an
    administrator replays from event 1: every event arrives again, in order, and the
    subscription is active again."""
    inbox = Inbox(statuses=(200, 500, 500))
    try:
        for h in harness(tmp_path, inbox.receiver, subscription_max_failures=2, **FAST):
            admin = token(h, "admin", USER_SCOPES)
            made = h.client.post(
                "/fhir/Subscription", json=subscription(inbox.receiver.url()), headers=bearer(admin)
            )
            id = made.json()["id"]
            inbox.wait_for(1)
            for patient in ("p1", "p2", "p3"):
                written = h.client.post(
                    "/fhir/Observation", json=observation(patient), headers=bearer(admin)
                )
                assert written.status_code == 201, written.text
            _wait_state(h, id, "error")
            assert _numbers(inbox) == ["1", "1"]  # event 1 tried twice, then error

            # a user without the admin role may not replay
            h.user("nurse", "Practitioner/n1")
            nurse = token(h, "nurse", USER_SCOPES)
            refused = h.client.post(
                f"/fhir/Subscription/{id}/$redeliver?eventsSinceNumber=1", headers=bearer(nurse)
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["resourceType"] == "OperationOutcome"

            replayed = h.client.post(
                f"/fhir/Subscription/{id}/$redeliver",
                json={
                    "resourceType": "Parameters",
                    "parameter": [{"name": "eventsSinceNumber", "valueInteger": 1}],
                },
                headers=bearer(admin),
            )
            assert replayed.status_code == 200, replayed.text
            values = {p["name"]: p for p in replayed.json()["parameter"]}
            assert values["redelivered"]["valueInteger"] == 3
            assert values["status"]["valueCode"] == "active"
            inbox.wait_for(6)
            assert _numbers(inbox) == ["1", "1", "1", "2", "3"]
            _wait_state(h, id, "active")

            too_far = h.client.post(
                f"/fhir/Subscription/{id}/$redeliver?eventsSinceNumber=9", headers=bearer(admin)
            )
            assert too_far.status_code == 422, too_far.text
            assert too_far.json()["issue"][0]["expression"] == ["eventsSinceNumber"]
            missing = h.client.post(f"/fhir/Subscription/{id}/$redeliver", headers=bearer(admin))
            assert missing.status_code == 400, missing.text
            unknown = h.client.post(
                "/fhir/Subscription/nope/$redeliver?eventsSinceNumber=1", headers=bearer(admin)
            )
            assert unknown.status_code == 404, unknown.text
    finally:
        inbox.close()


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)

    async def seed() -> None:
        repository = await open_repository(url, migrate=True)
        try:
            queue = repository.subscriptions
            events = [NewEvent("s1", seq, "Observation", f"o{seq}", 1) for seq in (1, 2, 3)]
            await queue.enqueue(Batch("test", 3, events))
            await queue.set_status("s1", "active")
            now = datetime.now(UTC)
            for _ in range(3):
                [claimed] = await queue.claim(now, 10, 60, "worker")
                if claimed.event.number == 2:
                    await queue.dead_letter(claimed.id, "worker", "HTTP 410")
                else:
                    await queue.delivered(claimed.id, "worker")
        finally:
            await repository.close()

    asyncio.run(seed())
    return url


def test_cli_status_lists_dead_letters_and_redeliver_replays(database: str) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["subscriptions", "status", "s1", "--database", database])
    assert shown.exit_code == 0, shown.output
    assert "active" in shown.output and "events since subscription start: 3" in shown.output
    assert "Observation/o2/_history/1" in shown.output and "HTTP 410" in shown.output

    done = runner.invoke(
        cli, ["subscriptions", "redeliver", "s1", "--from", "2", "--database", database]
    )
    assert done.exit_code == 0, done.output
    assert "2 events due again" in done.output

    async def pending() -> list[int]:
        repository = await open_repository(database)
        try:
            kept = await repository.subscriptions.events("s1")
            return [d.event.number for d in kept if d.state == "pending"]
        finally:
            await repository.close()

    assert asyncio.run(pending()) == [2, 3]

    wrong = runner.invoke(
        cli, ["subscriptions", "redeliver", "s1", "--from", "7", "--database", database]
    )
    assert wrong.exit_code == 1 and "between 1 and 3" in wrong.output
    unknown = runner.invoke(cli, ["subscriptions", "status", "nope", "--database", database])
    assert unknown.exit_code == 1 and "no recorded events" in unknown.output
