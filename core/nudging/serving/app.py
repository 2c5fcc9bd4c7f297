"""An OpenAI-compatible HTTP server for a nudged pair (`nudging serve`).

`/v1/chat/completions` and `/v1/completions` (with SSE streaming), `/v1/models`, `/health`,
`/metrics`, and the playground page at `/`. Responses follow OpenAI's schema and add a `nudging`
object: the spans with their source and the generation's stats. One engine worker serves queued
requests (see `worker`); a client that disconnects cancels its generation.

A chat request is a question: the base sees its plain template and the answer ends at the
template's next-turn marker. `/v1/completions` is a raw continuation: both models continue the
prompt text as it is (`RawPrompt`), so few-shot and document prompts behave as on any completions
server. `create_plain_app` serves one plain model with vLLM-style logprobs instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..config import NudgingConfig
from ..errors import ConfigError, InputError
from ..nudger import Nudger
from ..prompts import Prompt, RawPrompt
from ..results import Result, StreamEvent
from ..tools import CallFilter, offered
from .guard import warn_if_exposed
from .http import (
    APIError,
    Submission,
    arrival,
    base_app,
    check_model,
    check_single_choice,
    new_id,
    now,
    read_request,
    sse,
)
from .grammars import GrammarCheck
from .metrics import Metrics
from .openai import ChatCompletionRequest, CompletionRequest, RequestBase, refusal
from .plain import create_plain_app
from .playground import PAGE
from .worker import Done, Job, Worker

__all__ = ["create_app", "create_plain_app", "run_server", "serve", "serve_in_thread"]

# NudgingConfig field -> request field, for pointing ConfigError messages at the right parameter
_PARAMS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "seed": "seed", "stop": "stop", "gamma": "gamma", "response_format": "response_format", "tools": "tools", "tool_choice": "tool_choice"}


def serve_batched(nudger: Nudger, max_batch: int, jobs: list[Job], take: Callable[[int], list[Job]]) -> None:
    """The worker's runner: hand jobs to the nudger's engine (the one thread that decodes for this
    Nudger, batching rows as they come: continuous batching), admitting waiting ones as rows end,
    up to `max_batch` at once; each job gets its own events and Result as its row produces them,
    and is dropped from here with its last item (a batch that never empties keeps no finished job)."""
    ended = threading.Condition()
    live: set[int] = set()
    tickets: dict[int, Any] = {}  # live jobs' engine tickets (an ended job's goes with it: nothing kept)

    def deliver(job: Job, item: Any) -> None:  # on the engine thread
        if isinstance(item, BaseException):
            job.fail(item)  # a row's last item: the job leaves with it
        elif isinstance(item, Result):
            job.finish(item)
        else:
            job.emit(item)
            return
        with ended:
            live.discard(id(job))
            tickets.pop(id(job), None)
            ended.notify()

    def admit(new: list[Job]) -> None:
        runs, keys = [], []
        for job in new:
            prompt, config = job.payload
            try:
                runs.append((nudger.run(prompt, config, cancel=job.cancel), partial(deliver, job)))
            except Exception as exc:
                job.fail(exc)
                continue
            keys.append(id(job))
            with ended:
                live.add(id(job))
        for key, ticket in zip(keys, nudger.engine.submit(runs)):
            with ended:
                tickets.update({key: ticket} if key in live else {})  # unless it ended already

    admit(jobs)
    try:
        while True:
            with ended:
                if not live:
                    return
                ended.wait(0.01)  # a row ended, or time to look for waiting jobs
                room = max_batch - len(live)
            if room > 0:
                admit(take(room))
    finally:
        for t in list(tickets.values()):
            t.cancel()


@dataclass(frozen=True)
class Limits:
    """What one request may ask: `max_tokens` (None: the context window is the only cap) and
    `timeout`, seconds from arrival to the last byte (None: no deadline; past it: 504, job cancelled)."""

    max_tokens: int | None = None
    timeout: float | None = None


def create_app(
    nudger: Nudger,
    *,
    config: NudgingConfig | None = None,
    model_name: str = "nudging",
    max_queue: int = 16,
    max_batch: int = 8,
    limits: Limits = Limits(),
    api_key: str | None = None,
    allowed_origins: Sequence[str] = (),
) -> FastAPI:
    """The OpenAI-compatible app for `nudger`. Requests override `config` (default: `nudger.config`;
    greedy unless it says otherwise). Up to `max_batch` requests decode together; at most `max_queue`
    more wait for a slot, and beyond that get 503 with Retry-After. `api_key`/`allowed_origins`: see `base_app`."""
    defaults = config or nudger.config
    worker = Worker(partial(serve_batched, nudger, max_batch), max_queue=max_queue, max_batch=max_batch)
    app = base_app(model_name, worker, title="nudging", api_key=api_key, allowed_origins=allowed_origins)
    ctx = _Context(nudger, defaults, worker, model_name, limits, app.state.metrics, GrammarCheck(nudger.base, nudger.nudger))

    @app.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        req = await read_request(request, CompletionRequest)
        if req.echo or req.logprobs is not None:
            raise APIError(400, "echo and logprobs are not available for nudged text (serve a single model with `nudging serve --plain` for them)", param="logprobs" if req.logprobs is not None else "echo", code="unsupported_value")
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise APIError(400, "prompt must be one string (batches and token ids are not supported by a nudged pair, whose models have different tokenizers)", param="prompt", code="unsupported_value")
            prompt = prompt[0]
        return await _respond(request, ctx, req, RawPrompt(prompt), req.max_tokens, chat=False)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        req = await read_request(request, ChatCompletionRequest)
        if req.logprobs:
            raise APIError(400, "logprobs are not available for nudged text", param="logprobs", code="unsupported_value")
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        return await _respond(request, ctx, req, _messages(req), max_tokens, chat=True)

    return app


def _messages(req: ChatCompletionRequest) -> list[dict[str, str]]:
    """OpenAI messages as the engine's {"role", "content"} dicts: text parts joined, "developer" read as "system"."""
    out = []
    for i, m in enumerate(req.messages):
        content = m.content
        if isinstance(content, list):
            other = [p.type for p in content if p.type != "text"]
            if other:
                raise APIError(400, f"messages[{i}]: only text content is supported, got a {other[0]!r} part", param=f"messages.{i}.content", code="unsupported_value")
            content = "".join(p.text or "" for p in content)
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": content or ""}
        if m.role == "assistant" and m.tool_calls:
            msg["tool_calls"] = m.tool_calls
        out.append(msg)
    return out


@dataclass(frozen=True)
class _Context:
    nudger: Nudger
    defaults: NudgingConfig
    worker: Worker
    model_name: str
    limits: Limits
    metrics: Metrics
    grammar: GrammarCheck  # bounds and compiles a request's constraint off the engine thread


def _config(ctx: _Context, req: RequestBase, prompt: Prompt, max_tokens: int | None) -> NudgingConfig:
    """The request's settings over the server's, validated: unsupported parameters, values out of
    range, empty or malformed prompts and prompts that do not fit either model's context window are
    refused before queueing."""
    nudger, defaults = ctx.nudger, ctx.defaults
    refused = refusal(req)
    if refused:
        param, message, code = refused
        raise APIError(400, message, param=param, code=code)
    if max_tokens is not None and max_tokens < 1:
        raise APIError(400, f"max_tokens must be at least 1, got {max_tokens}", param="max_tokens", code="invalid_value")
    cap = ctx.limits.max_tokens
    if cap is not None and max_tokens is not None and max_tokens > cap:
        raise APIError(400, f"max_tokens is limited to {cap} on this server (--max-tokens), got {max_tokens}", param="max_tokens", code="invalid_value")
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    overrides = {"max_new_tokens": max_tokens, "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k, "seed": req.seed, "stop": stop, "gamma": req.gamma}
    if isinstance(req, ChatCompletionRequest):  # constrained output and tool calling (chat only)
        overrides.update(tools=req.tools or None, tool_choice=req.tool_choice, parallel_tool_calls=req.parallel_tool_calls, response_format=req.response_format)
    try:
        cfg = defaults.merged(**overrides)
        if cap is not None and cfg.max_new_tokens > cap:
            cfg = cfg.merged(max_new_tokens=cap)
        ctx.grammar(cfg)
        # the prompt ids, as the engine builds them: usage and context limits count base-view ids
        ids = nudger.prompt_ids(prompt, cfg)
        n_prompt = len(ids["base"])
    except ConfigError as exc:
        raise APIError(400, str(exc), param=_PARAMS.get(str(exc).split()[0]), code="invalid_value") from None
    except InputError as exc:
        raise APIError(400, str(exc), param="messages" if not isinstance(prompt, RawPrompt) else "prompt", code="invalid_value") from None
    param = "messages" if not isinstance(prompt, RawPrompt) else "prompt"
    n_window = nudger.nudger.context_window
    if n_window and len(ids["nudger"]) >= n_window:
        raise APIError(400, f"The prompt is {len(ids['nudger'])} tokens for the nudger, whose maximum context length is {n_window} tokens. Please reduce the length of the prompt.", param=param, code="context_length_exceeded")
    window = nudger.base.context_window
    wanted = n_prompt + (max_tokens or 0)
    if window and (n_prompt >= window or wanted > window):
        raise APIError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested {wanted} tokens "
            f"({n_prompt} in the prompt, {max_tokens or 0} for the completion). Please reduce the length of the prompt or the completion.",
            param=param,
            code="context_length_exceeded",
        )
    return cfg


async def _respond(request: Request, ctx: _Context, req: RequestBase, prompt: Prompt, max_tokens: int | None, *, chat: bool) -> Response:
    arrived = arrival()
    check_model(req.model, ctx.model_name)
    check_single_choice(req.n)
    config = await run_in_threadpool(_config, ctx, req, prompt, max_tokens)
    sub = Submission(request, ctx.worker, (prompt, config), timeout=ctx.limits.timeout, observe=ctx.metrics.track(arrived), arrived=arrived)
    try:
        first = await sub.next()  # errors before any output still get their own status code
    except BaseException:
        sub.close()
        raise
    meta = {"id": new_id("chatcmpl" if chat else "cmpl"), "created": now(), "model": ctx.model_name}
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return sse(_chunks(sub, first, meta, chat=chat, usage=usage, tools=offered(config) or ()), sub)
    try:
        item = first
        while not isinstance(item, Done):
            item = await sub.next()
    finally:
        sub.close()
    res: Result = item.result
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": res.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": res.content if not res.tool_calls else (res.content or None)}
        if res.tool_calls:
            choice["message"]["tool_calls"] = res.tool_calls
    else:
        choice["text"] = res.text
    body = {**meta, "object": "chat.completion" if chat else "text_completion", "choices": [choice], "usage": _usage(res), "nudging": _nudging(res)}
    return JSONResponse(body)


async def _chunks(sub: Submission, first: Any, meta: dict[str, Any], *, chat: bool, usage: bool, tools: tuple[dict[str, Any], ...] = ()) -> AsyncIterator[dict[str, Any]]:
    """OpenAI stream chunks; each text chunk says which model wrote it, the last one carries the whole
    `nudging` object. Tool calls stream as OpenAI's `delta.tool_calls` pieces, arguments as written."""
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta: str | dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        choice["delta" if chat else "text"] = delta
        return {**meta, "object": obj, "choices": [choice], **extra}

    if chat:
        yield chunk({"role": "assistant", "content": ""})
    calls = CallFilter(chat and bool(tools), tools, live=True)  # tool-call text never streams as content
    item = first
    while not isinstance(item, Done):
        event: StreamEvent = item
        text, pieces = calls.feed(event.text)
        if text:
            yield chunk({"content": text} if chat else text, nudging={"source": event.source})
        if pieces:
            yield chunk({"tool_calls": [_call_delta(p) for p in pieces]}, nudging={"source": event.source})
        item = await sub.next()
    res: Result = item.result
    held, pieces = calls.finish(res)
    if held:
        yield chunk({"content": held})
    if pieces:
        yield chunk({"tool_calls": [_call_delta(p) for p in pieces]})
    yield chunk({} if chat else "", res.finish_reason, nudging=_nudging(res))
    if usage:
        yield {**meta, "object": obj, "choices": [], "usage": _usage(res)}


def _call_delta(piece: dict[str, Any]) -> dict[str, Any]:
    """A CallFilter piece as OpenAI's `delta.tool_calls[i]`: id, type and name in a call's first piece."""
    fn: dict[str, Any] = {"arguments": piece["arguments"]}
    if "name" not in piece:
        return {"index": piece["index"], "function": fn}
    return {"index": piece["index"], "id": piece["id"], "type": "function", "function": {"name": piece["name"], **fn}}


def _usage(res: Result) -> dict[str, int]:
    p, c = res.stats.prompt_tokens, res.stats.output_tokens
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _nudging(res: Result) -> dict[str, Any]:
    """The response's `nudging` extension: spans, stats, and calls that were not valid (with their error)."""
    out: dict[str, Any] = {"spans": [asdict(s) for s in res.spans], "stats": res.stats.to_dict()}
    if res.invalid_tool_calls:
        out["invalid_tool_calls"] = res.invalid_tool_calls
    return out


def serve(
    base: str | None = None,
    nudger: str | None = None,
    gamma: float | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    plain: str | None = None,
    model_name: str | None = None,
    max_queue: int = 16,
    max_batch: int = 8,
    limits: Limits = Limits(),
    api_key: str | None = None,
    allowed_origins: Sequence[str] = (),
    device_map: Any = None,
    dtype: str = "auto",
    log_level: str = "info",
) -> None:
    """Load models and serve them until interrupted: the nudged pair (`base`, `nudger`; the embedded
    model stands in for one not given), or with `plain` one model with logprobs (named `plain` unless
    `model_name` says otherwise)."""
    from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER, load_model

    if plain is not None:
        if base is not None or nudger is not None or gamma is not None:
            raise ConfigError("plain serves one model: don't combine it with base, nudger or gamma")
        model, tokenizer = load_model(plain, device_map=device_map, dtype=dtype)
        app = create_plain_app(model, tokenizer, model_name or plain, max_queue=max_queue, api_key=api_key, allowed_origins=allowed_origins)
    else:
        config = NudgingConfig() if gamma is None else NudgingConfig(gamma=gamma)
        pair = Nudger.from_pretrained(base or EMBEDDED_BASE, nudger or EMBEDDED_NUDGER, device_map=device_map, dtype=dtype)
        app = create_app(pair, config=config, model_name=model_name or "nudging", max_queue=max_queue, max_batch=max_batch, limits=limits, api_key=api_key, allowed_origins=allowed_origins)
    run_server(app, host, port, log_level=log_level)


def run_server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve `app` with uvicorn until interrupted (port 0: a free port, printed in the log). The
    server's own log (one line per request, with its x-request-id) replaces uvicorn's access log."""
    import uvicorn

    logger = logging.getLogger("nudging")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    warn_if_exposed(host, app.state.api_key)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn on a background thread (port 0: a free one) and yield its base URL,
    e.g. "http://127.0.0.1:41234/v1"; the server shuts down when the block ends. For tests and notebooks."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="nudging-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout)
