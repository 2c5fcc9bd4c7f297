"""HTTP plumbing shared by the nudged and the plain server.

OpenAI's error JSON for every failure (never a stack trace), strict body parsing (JSON bodies only,
size, UTF-8, JSON without NaN/Infinity, schema), queue admission, a per-request deadline,
Server-Sent Events, cancelling a job when its client leaves, and the app's door (`guard`: request
ids, API key; optional CORS for `allowed_origins`; `/metrics`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..backends.remote import RemoteError
from ..errors import NudgingError
from .heap import release_large_buffers
from .guard import ARRIVED, REQUEST_ID, Guard
from .metrics import Metrics
from .worker import Cancelled, Job, QueueFull, Worker

log = logging.getLogger("nudging.server")
M = TypeVar("M", bound=BaseModel)
MAX_BODY_BYTES = 8 * 1024 * 1024


class APIError(Exception):
    """An error to send as OpenAI's `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None, type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def as_api_error(exc: BaseException) -> APIError:
    """The API error for an exception raised while validating or running a request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFull):
        return APIError(503, str(exc), code="server_busy", headers={"Retry-After": "1"})
    if isinstance(exc, Cancelled):
        return APIError(503, str(exc), code="cancelled")
    if isinstance(exc, RemoteError):  # the remote base or nudger failed: not the client's fault
        if exc.unavailable:
            return APIError(503, str(exc), code="upstream_unavailable", type="server_error", headers={"Retry-After": "5"})
        return APIError(502, str(exc), code="upstream_error", type="server_error")
    if isinstance(exc, NudgingError):
        message = str(exc)
        code = "context_length_exceeded" if "context" in message else None
        return APIError(400, message, code=code)
    log.error("request %s failed", REQUEST_ID.get(), exc_info=exc)
    return APIError(500, "internal server error (see the server log)")


def arrival() -> float:
    """time.monotonic() when this request came in (stamped by the Guard; now, outside one)."""
    arrived = ARRIVED.get()
    return time.monotonic() if arrived is None else arrived


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


async def read_request(request: Request, model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    """Parse a JSON request body into `model`: 415 unless it says it is JSON (a cross-origin page
    can send text/plain without asking first, never application/json), 413 when too large, 400 when
    not UTF-8 JSON, 422 on schema errors."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise APIError(415, f"Content-Type must be application/json, got {media or 'none'!r}", code="unsupported_media_type")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > max_bytes:
            raise APIError(413, f"request body is larger than {max_bytes} bytes", code="request_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise APIError(400, f"request body is not valid UTF-8 ({exc.reason} at byte {exc.start})", code="invalid_body") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "request body nests too deeply", code="invalid_body") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc.errors()) from None


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _schema_error(errors: list[Any]) -> APIError:
    """One 422 for the first wrong field. A union field (e.g. `prompt`) fails once per member, with the
    member's type as the last part of its location: those errors are merged into one message."""
    first = errors[0]["loc"]
    group = [e for e in errors if tuple(e["loc"][: len(first) - 1]) == tuple(first[:-1])]
    prefix = list(first)
    for e in group:
        while tuple(e["loc"][: len(prefix)]) != tuple(prefix):
            prefix.pop()
    param = ".".join(str(p) for p in prefix)
    message = " or ".join(dict.fromkeys(e["msg"] for e in group))
    return APIError(422, f"{param}: {message}" if param else message, param=param or None, code="invalid_value")


def check_model(requested: str | None, served: str) -> None:
    if requested is not None and requested != served:
        raise APIError(404, f"The model '{requested}' does not exist; this server serves '{served}'", param="model", code="model_not_found")


def check_single_choice(n: int) -> None:
    if n != 1:
        raise APIError(400, f"n={n} is not supported: this server returns exactly one choice (n=1)", param="n", code="unsupported_value")


class Submission:
    """A job on the worker plus a task that cancels it when the client disconnects; `timeout`
    (seconds from the request's arrival: reading the body, validation and queueing included)
    cancels it and answers 504; `observe` sees every item."""

    def __init__(self, request: Request, worker: Worker, payload: Any, *, timeout: float | None = None, observe: Callable[[Any], None] | None = None, arrived: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.timeout, self.observe, self._worker = timeout, observe, worker
        self._deadline = None if timeout is None else (arrived if arrived is not None else time.monotonic()) + timeout
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise self._late()
        try:
            self.job: Job = worker.submit(payload, loop)
        except QueueFull as exc:
            raise as_api_error(exc) from None
        self._watch = asyncio.create_task(self._watch_disconnect(request))

    def cancel(self) -> None:
        """Stop the job: a waiting one leaves the queue now, a running one stops at its next step."""
        self.job.cancel.set()
        self._worker.withdraw(self.job)

    async def _watch_disconnect(self, request: Request) -> None:
        while not self.job.cancel.is_set():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                self.cancel()

    async def next(self) -> Any:
        """The job's next item; its failure as an APIError."""
        try:
            if self._deadline is None:
                item = await self.job.next()
            else:
                item = await asyncio.wait_for(self.job.next(), max(0.0, self._deadline - time.monotonic()))
        except asyncio.TimeoutError:
            self.cancel()
            raise self._late() from None
        except Exception as exc:
            raise as_api_error(exc) from None
        if self.observe is not None:
            self.observe(item)
        return item

    def _late(self) -> APIError:
        return APIError(504, f"the request ran past this server's limit of {self.timeout:g} seconds", code="timeout")

    def close(self) -> None:
        """Stop watching; cancel the job if it is still running (the response ended early)."""
        self._watch.cancel()
        if not self.job.finished:
            self.cancel()


def sse(chunks: AsyncIterator[dict[str, Any]], sub: Submission) -> StreamingResponse:
    """Server-Sent Events in OpenAI's framing: one `data: {json}` per chunk, then `data: [DONE]`.

    An error after the first byte cannot change the status code, so it is sent as an error event
    (the openai client raises it). Closing the stream early cancels the job.
    """

    async def events() -> AsyncGenerator[str, None]:
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        except Exception as exc:
            yield f"data: {json.dumps(as_api_error(exc).body(), ensure_ascii=False)}\n\n"
        finally:
            sub.close()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def base_app(model_name: str, worker: Worker, *, title: str, api_key: str | None = None, allowed_origins: Sequence[str] = (), max_model_len: int | None = None) -> FastAPI:
    """A FastAPI app that runs `worker` for its lifetime, answers errors in OpenAI's shape, and
    serves `/health`, `/metrics`, `/v1/models` and `/v1/models/{id}` (with vLLM's `max_model_len`
    when given; `app.state.metrics`: the app's Metrics). With `api_key`, every route but `/health`
    and `/` needs it as a Bearer token; `allowed_origins` (e.g. ["https://my.site"], or ["*"]) may
    call it from browsers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        release_large_buffers()
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.api_key = api_key
    app.state.metrics = metrics = Metrics(worker, frozenset({"/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"}))
    app.add_middleware(Guard, api_key=api_key, count=metrics.count)
    if allowed_origins:  # added last: outermost, so preflights and 401s get CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type", "X-Request-Id"], expose_headers=["X-Request-Id"])
    created = now()
    card: dict[str, Any] = {"id": model_name, "object": "model", "created": created, "owned_by": "nudging"}
    if max_model_len:
        card["max_model_len"] = max_model_len

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"Invalid URL ({request.method} {request.url.path})" if exc.status_code == 404 else str(exc.detail)
        return APIError(exc.status_code, message).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _schema_error(list(exc.errors())).response()

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        return as_api_error(exc).response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, **worker.status()}

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [card]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        check_model(model_id, model_name)
        return card

    return app
