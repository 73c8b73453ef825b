"""Cost of the per-address rate limit on the request path (security/ratelimit_middleware.py).

Calls an empty ASGI app directly, in one event loop, with and without RateLimitMiddleware in
front, for ``GET /fhir/Patient/123`` from one address (the budget never runs out), a search and a
POST; the difference per request is the middleware's overhead. Also times
``RateLimiter.check_client`` on memory storage and, when Redis answers at ``--redis``, both checks
on Redis with the address budget shared there too (``shared_ip``; a network round trip each, so a
different scale). Best of ``--repeat`` runs of ``--requests`` requests.

    .venv/bin/python bench/ratelimit.py [--requests 200000] [--repeat 5] [--redis URL]

Prints microseconds per request and writes ``bench/results/ratelimit.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from starlette.types import Message, Receive, Scope, Send

from healthbridge.security.ratelimit import RateLimitConfig, RateLimiter
from healthbridge.security.ratelimit_middleware import RateLimitMiddleware

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HUGE = "1000000000/second"


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def _scope(method: str, path: str) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
    }


async def _per_call(call: Callable[[], Awaitable[Any]], n: int, repeat: int) -> float:
    """Best microseconds per call over ``repeat`` runs of ``n`` calls."""
    for _ in range(min(n, 10_000)):  # warm-up
        await call()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            await call()
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


async def middleware_overhead(limiter: RateLimiter, n: int, repeat: int) -> dict[str, float]:
    limited = RateLimitMiddleware(empty_app, limiter)
    out: dict[str, float] = {}
    for name, method, path in (
        ("get_read", "GET", "/fhir/Patient/123"),
        ("get_search", "GET", "/fhir/Observation"),
        ("post_create", "POST", "/fhir/Patient"),
    ):
        scope = _scope(method, path)

        async def bare(scope: Scope = scope) -> None:
            await empty_app(scope, _receive, _send)

        async def with_limit(scope: Scope = scope) -> None:
            await limited(scope, _receive, _send)

        base = await _per_call(bare, n, repeat)
        total = await _per_call(with_limit, n, repeat)
        out[f"{name}_app_us"] = round(base, 3)
        out[f"{name}_with_middleware_us"] = round(total, 3)
        out[f"{name}_overhead_us"] = round(total - base, 3)
    return out


async def client_check(limiter: RateLimiter, n: int, repeat: int) -> float:
    async def call() -> None:
        await limiter.check_client("bench-client", "read")

    return round(await _per_call(call, n, repeat), 3)


def redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1):
            return True
    except OSError:
        return False


async def run(requests: int, repeat: int, redis_url: str) -> dict[str, Any]:
    memory = RateLimiter(RateLimitConfig(ip=HUGE, client=HUGE))
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
        "when": time.time(),
        "requests": requests,
        "memory": {
            **await middleware_overhead(memory, requests, repeat),
            "check_client_read_us": await client_check(memory, requests, repeat),
        },
    }
    if redis_reachable(redis_url):
        config = RateLimitConfig(storage=redis_url, ip=HUGE, client=HUGE, shared_ip=True)
        shared = RateLimiter(config)  # the address budget in Redis too (not the default)
        try:
            await shared.storage.reset()
            small = max(1000, requests // 100)
            results["redis"] = {
                **await middleware_overhead(shared, small, 1),
                "check_client_read_us": await client_check(shared, small, 1),
                "requests": small,
            }
            await shared.storage.reset()
        finally:
            await shared.close()
    else:
        results["redis"] = f"not reachable at {redis_url}"
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rate-limit middleware overhead.")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--out", type=Path, default=RESULTS / "ratelimit.json")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.requests, args.repeat, args.redis))
    for backend in ("memory", "redis"):
        numbers = results[backend]
        if isinstance(numbers, str):
            print(f"{backend}: {numbers}")
            continue
        for key, value in numbers.items():
            print(f"{backend:7} {key:32} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
