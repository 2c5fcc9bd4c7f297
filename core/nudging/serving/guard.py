"""The door of the server: request ids, API-key auth, access log and request counts.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which wraps `receive` and would hide a
streaming client's disconnect from the handler that cancels its job). Every response carries
`x-request-id` (the client's, if it sent a sane one); the id is in the access log line and in the
log of any failure. With an API key, every route except `/health` and the static playground page
needs `Authorization: Bearer <key>`, as vLLM's `--api-key` does.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("nudging.server")
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
ARRIVED: ContextVar[float | None] = ContextVar("arrived", default=None)  # time.monotonic() when the request came in
OPEN_PATHS = frozenset({"/health", "/"})  # no key needed: liveness, and a page that holds no data
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def _error(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}).encode()


class Guard:
    """Request id, auth and accounting around `app`; `count(path, status)` is called once per response."""

    def __init__(self, app: ASGIApp, *, api_key: str | None = None, count: Callable[[str, int], None] | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.count = count

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get("x-request-id", "")
        rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        ARRIVED.set(time.monotonic())
        path, started, status = scope.get("path", ""), time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            if self.api_key is not None and path not in OPEN_PATHS and not self._authorized(headers.get("authorization", "")):
                body = _error("Missing or invalid API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
                await send_with_id({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("%s %s %s %d %.3fs", rid, scope.get("method", ""), path, status, time.perf_counter() - started)
            if self.count is not None:
                self.count(path, status)
            REQUEST_ID.reset(token)

    def _authorized(self, header: str) -> bool:
        scheme, _, key = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), self.api_key.encode())  # type: ignore[union-attr]


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (a name other than localhost counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, api_key: str | None) -> None:
    """Say loudly that anyone who reaches `host` can generate, read /docs and /metrics."""
    if api_key is None and not is_loopback(host):
        log.warning(
            "\n%s\nWARNING: listening on %s WITHOUT an API key: anyone who can reach this address can run "
            "generations and read /docs, /openapi.json and /metrics. Pass --api-key (or set NUDGING_API_KEY).\n%s",
            "!" * 80, host, "!" * 80,
        )
