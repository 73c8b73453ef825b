"""The websocket endpoint of the websocket channel: binding, handshakes, heartbeats.

Backport IG (https://hl7.org/fhir/uv/subscriptions-backport/channels.html#websockets), served at
``[base]/$subscription-ws`` (the ``websocket-url`` of ``$get-ws-binding-token``,
:mod:`.websocket_tokens`). The token is the authentication: the upgrade itself needs none.

* The client sends the text ``bind-with-token: <token>`` (Medplum's JSON form
  ``{"type": "bind-with-token", "payload": {"token": "..."}}`` is accepted too). Each
  subscription the token names that is still live, still a websocket subscription and still
  owned as when the token was issued is bound to this connection, and gets a ``handshake``
  notification Bundle on it. Several binds on one connection add up; ``unbind-with-token:
  <token>`` lets go of the token's subscriptions.
* Then the connection receives the subscriptions' ``event-notification`` Bundles, in
  event-number order, sent by the hub (:mod:`.websocket_hub`), and a ``heartbeat`` Bundle per
  subscription whose ``backport-heartbeat-period`` passed without any message for it (none for
  subscriptions without a period, as the IG says).
* Errors are OperationOutcome JSON texts. An unknown or expired token, a message that is not a
  command, or no bind within :data:`BIND_TIMEOUT_S` seconds: the error, then close code 1008
  (policy violation); a binary frame: 1003; a message over :data:`MAX_MESSAGE` characters:
  1009. A bound subscription that is deleted, turned off or written by another owner is
  unbound with an error text; the server stopping closes with 1001.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Final, NoReturn

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from healthbridge.fhir.errors import FhirError
from healthbridge.infra.logging import get_logger
from healthbridge.infra.tasks import stopping
from healthbridge.store.subscriptions import DeliveryQueue
from healthbridge.subscriptions.channels.websocket import is_websocket
from healthbridge.subscriptions.live import Live, LiveSubscriptions
from healthbridge.subscriptions.notifications import NotificationType
from healthbridge.subscriptions.sender import Sender
from healthbridge.subscriptions.websocket_hub import WebsocketHub
from healthbridge.subscriptions.websocket_tokens import BindingTokens, fingerprint

BIND_TIMEOUT_S: Final = 30.0
MAX_MESSAGE: Final = 4096
POLICY_VIOLATION: Final = 1008
UNSUPPORTED_DATA: Final = 1003
TOO_BIG: Final = 1009
GOING_AWAY: Final = 1001
INTERNAL_ERROR: Final = 1011
RECHECK_S: Final = 5.0
"""How often bound subscriptions are checked to be still live and owned alike."""
_log = get_logger("healthbridge.subscriptions.websocket")


def outcome(text: str, code: str = "invalid") -> str:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]})


def command(text: str) -> tuple[str, str] | None:
    """``(verb, token)`` of a client message, or None when it is not one."""
    verb, colon, rest = text.partition(":")
    if colon and verb.strip() in ("bind-with-token", "unbind-with-token"):
        return verb.strip(), rest.strip()
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("payload"), dict):
        return None
    kind, token = message.get("type"), message["payload"].get("token")
    if kind in ("bind-with-token", "unbind-with-token", "unbind-from-token") and isinstance(
        token, str
    ):
        return ("bind-with-token" if kind == "bind-with-token" else "unbind-with-token"), token
    return None


class Closed(Exception):
    """The connection ends (the close frame was sent)."""


class Connection:
    """One client's websocket (module docstring)."""

    def __init__(
        self,
        socket: WebSocket,
        hub: WebsocketHub,
        tokens: BindingTokens,
        live: LiveSubscriptions,
        sender: Sender,
        queue: DeliveryQueue,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket = socket
        self.hub = hub
        self.tokens = tokens
        self.live = live
        self.sender = sender
        self.queue = queue
        self._clock = clock
        self._lock = asyncio.Lock()
        self._open = True
        self.bound: dict[str, str] = {}  # subscription id -> owner fingerprint
        self._last: dict[str, float] = {}  # subscription id -> when it was last sent something

    # -- sending (the hub, heartbeats and replies share the socket) ------------------------
    async def _text(self, text: str) -> bool:
        async with self._lock:
            if not self._open:
                return False
            try:
                await self.socket.send_text(text)
            except Exception:  # the client is gone; the reader will see it too
                self._open = False
                return False
            return True

    async def notify(self, subscription_id: str, text: str) -> bool:
        if subscription_id not in self.bound or not await self._text(text):
            return False
        self._last[subscription_id] = self._clock()
        return True

    async def close(self, code: int, text: str | None = None, reason: str = "") -> None:
        if text is not None:
            await self._text(text)
        async with self._lock:
            if self._open:
                self._open = False
                try:
                    await self.socket.close(code, reason[:120])
                except Exception:  # already gone
                    _log.debug("websocket close failed", code=code)

    async def shutdown(self) -> None:
        await self.close(GOING_AWAY, outcome("The server is stopping; connect again", "transient"))

    # -- serving ---------------------------------------------------------------------------
    async def serve(self) -> None:
        await self.socket.accept()
        self.hub.add(self)
        ticker = asyncio.create_task(self._tick(), name="subscription-ws-tick")
        try:
            await self._read()
        except Closed:
            pass
        except FhirError as exc:  # the database is briefly unavailable
            _log.warning("websocket failed", error=str(exc))
            await self.close(INTERNAL_ERROR, outcome("Try again later", "transient"))
        except Exception:
            if stopping():
                raise
            _log.exception("websocket failed unexpectedly")
            await self.close(INTERNAL_ERROR, outcome("Internal error", "exception"))
        finally:
            ticker.cancel()
            self.hub.drop(self)
            await asyncio.gather(ticker, return_exceptions=True)

    async def _read(self) -> None:
        while self._open:
            wait = None if self.bound else BIND_TIMEOUT_S
            try:
                async with asyncio.timeout(wait):  # not wait_for: it may lose a cancellation
                    message = await self.socket.receive()
            except TimeoutError:
                await self._refuse(f"No bind-with-token within {BIND_TIMEOUT_S:.0f} seconds")
            if message["type"] == "websocket.disconnect":
                self._open = False
                return
            text = message.get("text")
            if text is None:
                await self.close(UNSUPPORTED_DATA, outcome("Send text messages", "structure"))
                return
            if len(text) > MAX_MESSAGE:
                await self.close(TOO_BIG, outcome("The message is too long", "too-long"))
                return
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        found = command(text)
        if found is None:
            await self._refuse(
                "Expected 'bind-with-token: <token>' or 'unbind-with-token: <token>'"
            )
        verb, token = found
        binding = await self.tokens.redeem(token)
        if binding is None:
            await self._refuse("The token is unknown or expired; ask $get-ws-binding-token again")
        if verb == "unbind-with-token":
            for id in binding.subscriptions:
                self._unbind(id)
            return
        subscriptions = await self.live.get()
        if any(id not in subscriptions for id in binding.subscriptions):
            subscriptions = await self.live.get(stale=True)
        bound = 0
        for id, owner in binding.subscriptions.items():
            live = subscriptions.get(id)
            if live is None or not is_websocket(live.subscription):
                await self._text(outcome(f"Subscription/{id} is not a live websocket subscription"))
            elif fingerprint(live.owner) != owner:
                await self._text(outcome(f"Subscription/{id} changed owner; get a new token"))
            else:
                await self._bind(live, owner)
                bound += 1
        if not bound and not self.bound:
            await self._refuse("The token binds no live websocket subscription")

    async def _refuse(self, text: str) -> NoReturn:
        await self.close(POLICY_VIOLATION, outcome(text, "security"), text)
        raise Closed

    async def _bind(self, live: Live, owner: str) -> None:
        """Bind, then the handshake (before the hub may send an event of it)."""
        state = await self.queue.status(live.id)
        if state is None or state.status == "requested":
            state = await self.queue.set_status(live.id, "active")
        self.bound[live.id] = owner
        await self._send(live, "handshake", state.status, state.events_since_start)
        self.hub.bind(self, live.id)
        _log.info("subscription websocket bound", id=live.id, client_id=live.owner.client_id)

    def _unbind(self, id: str) -> None:
        self.bound.pop(id, None)
        self._last.pop(id, None)
        self.hub.unbind(self, id)

    async def _send(self, live: Live, kind: NotificationType, status: str, since: int) -> None:
        body = self.sender.body(live, kind, [], status=status, events_since_start=since)
        text = body.decode() if body is not None else f"bound {live.id}"
        if kind == "handshake" or body is not None:  # classic: no heartbeats
            await self.notify(live.id, text)

    # -- heartbeats and re-checks ----------------------------------------------------------
    async def _tick(self) -> None:
        checked = self._clock()
        while self._open:
            await asyncio.sleep(self._next_in())
            try:
                subscriptions = await self.live.get()
                if self._clock() - checked >= RECHECK_S:
                    checked = self._clock()
                    await self._recheck(subscriptions)
                await self._heartbeats(subscriptions)
            except FhirError as exc:
                if stopping():
                    raise
                _log.warning("websocket heartbeat failed; retrying", error=str(exc))

    def _next_in(self) -> float:
        """Seconds to the next heartbeat due (at most 1)."""
        now = self._clock()
        waits = [1.0]
        for id in self.bound:
            live = self.live.by_id.get(id)
            period = live.subscription.heartbeat_period if live is not None else None
            if period:
                waits.append(self._last.get(id, now) + period - now)
        return max(min(waits), 0.05)

    async def _heartbeats(self, subscriptions: dict[str, Live]) -> None:
        now = self._clock()
        for id in list(self.bound):
            live = subscriptions.get(id)
            period = live.subscription.heartbeat_period if live is not None else None
            if live is None or not period or now - self._last.get(id, now) < period:
                continue
            state = await self.queue.status(id)
            if state is not None and state.status == "active":
                await self._send(live, "heartbeat", "active", state.events_since_start)

    async def _recheck(self, subscriptions: dict[str, Live]) -> None:
        for id, owner in list(self.bound.items()):
            live = subscriptions.get(id)
            if (
                live is None
                or fingerprint(live.owner) != owner
                or not is_websocket(live.subscription)
            ):
                self._unbind(id)
                text = f"Subscription/{id} is unbound: deleted, turned off or owned anew"
                await self._text(outcome(text, "security"))


def endpoint(
    hub: WebsocketHub,
    tokens: BindingTokens,
    live: LiveSubscriptions,
    sender: Sender,
    queue: DeliveryQueue,
) -> ASGIApp:
    """The ASGI app serving one :class:`Connection` per websocket."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        socket = WebSocket(scope, receive, send)
        await Connection(socket, hub, tokens, live, sender, queue).serve()

    return serve
