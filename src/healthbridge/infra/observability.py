"""Request ids, access logs, Prometheus metrics and the last-resort error guard, as one pure ASGI
middleware (no BaseHTTPMiddleware: it costs too much on the hot path).

- ``X-Request-Id``: a sane incoming value is kept, otherwise a new one is made; it is echoed on
  the response and bound to every log line of the request.
- Any exception that escapes the app becomes a 500 OperationOutcome naming only the request id;
  the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import IO, Any

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthbridge.infra.logging import get_logger

ErrorBody = Callable[[str], tuple[int, list[tuple[bytes, bytes]], bytes]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_log = get_logger("healthbridge.access")


class AccessLog:
    """One JSON line per request, written without structlog's processor chain (which cost ~40%
    of a cached read). Same shape as the other log lines: timestamp, level, event, fields.

    Lines are buffered and written at most ``flush_seconds`` later (or once ``batch`` lines are
    waiting), like nginx's ``access_log ... buffer=`` option: one write system call per batch
    instead of per request. A crash can lose at most that window of access lines; the durable
    record of who did what is the audit trail, not this log.
    """

    def __init__(
        self, stream: IO[bytes] | None = None, *, batch: int = 64, flush_seconds: float = 0.25
    ) -> None:
        self._stream = stream
        self._encoder = msgspec.json.Encoder()
        self._clock = _Clock()
        self._pending: list[bytes] = []
        self._batch = batch
        self._flush_seconds = flush_seconds
        self._timer: asyncio.TimerHandle | None = None

    def write(self, request_id: str, method: str, path: str, status: int, seconds: float) -> None:
        line = self._encoder.encode(
            {
                "timestamp": self._clock.now(),
                "level": "info",
                "event": "request",
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
        )
        self._pending.append(line)
        if len(self._pending) >= self._batch:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(self._flush_seconds, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            stream = self._stream or sys.stderr.buffer
            stream.write(b"\n".join(self._pending) + b"\n")
            stream.flush()
            self._pending.clear()


class Metrics:
    """The server's Prometheus metrics (one set per app; multi-process aware)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "healthbridge_http_requests_total",
            "HTTP requests",
            ["method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "healthbridge_http_request_duration_seconds",
            "HTTP request latency",
            ["method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def record(self, method: str, status: int, seconds: float) -> None:
        children = self._children.get((method, status))
        if children is None:
            if len(self._children) > 256:  # methods are arbitrary client input: bound the cache
                self._children.clear()
            children = (self.requests.labels(method, str(status)), self.latency.labels(method))
            self._children[(method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class RequestIds:
    """Unique request ids without an os.urandom call per request: 16 random hex digits per
    process, then a counter (unique across workers and restarts, cheap on the hot path)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):08x}"


class _Clock:
    """ISO-8601 UTC timestamps with microseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        moment = time.time()
        second = int(moment)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{int((moment - second) * 1_000_000):06d}Z"


class ObservabilityMiddleware:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, error_body: ErrorBody, access_log: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.error_body = error_body
        self.access_log = AccessLog() if access_log else None
        self._ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await self.app(scope, receive, send)
            finally:
                if self.access_log is not None and scope["type"] == "lifespan":
                    self.access_log.flush()
            return
        request_id = _incoming_id(scope) or self._ids.next()
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = message.get("headers")
                if isinstance(headers, list):  # Starlette hands us a fresh list per response
                    headers.append((b"x-request-id", request_id.encode()))
                else:
                    message = {
                        **message,
                        "headers": [*(headers or ()), (b"x-request-id", request_id.encode())],
                    }
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            _log.exception(
                "unhandled_error",
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
            )
            if not response_started:
                status, headers, body = self.error_body(request_id)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [*headers, (b"x-request-id", request_id.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            self.metrics.record(method, status, elapsed)
            if self.access_log is not None:
                self.access_log.write(request_id, method, scope["path"], status, elapsed)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None
    return None
