"""`nudging serve`: the OpenAI-compatible server (nudged, or one plain model)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import NudgingError
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from . import common
from .common import (
    DEFAULTS,
    BaseOpt,
    DeviceOpt,
    GammaOpt,
    NudgerOpt,
    PolicyOpt,
    _converted,
    app,
    build_config,
    fail,
)


@app.command()
def serve(
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    gamma: GammaOpt = DEFAULTS.gamma,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 listens on every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port; 0 picks a free one (printed at start).")] = 8000,
    model_name: Annotated[str | None, typer.Option("--model-name", help="The model id clients send and /v1/models lists (default: nudging, or the --plain spec).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Requests that may wait for the engine; more get 503 with Retry-After.")] = 16,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Requests decoded together (continuous batching: new ones join between steps).")] = 8,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="NUDGING_API_KEY", help="Require 'Authorization: Bearer <key>' on every route except /health and the playground page (as vLLM's --api-key).")] = None,
    allowed_origins: Annotated[list[str] | None, typer.Option("--allowed-origins", help="A web origin (e.g. https://my.site, or *) whose pages may call this server (CORS); repeat for more. Default: none.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="The most tokens one request may ask for (and the cap of its default).")] = 4096,
    request_timeout: Annotated[float | None, typer.Option("--request-timeout", min=0.001, help="Seconds one request may take, queueing included; past it: 504, generation cancelled. Default: no limit.")] = None,
    plain: Annotated[str | None, typer.Option("--plain", help="Serve this one model instead, not nudged, with vLLM-style logprobs (a remote base for a nudger). --base/--nudger/--gamma are then ignored.")] = None,
    device: DeviceOpt = None,
    policy: PolicyOpt = None,
    compile: common.CompileOpt = None,
    dtype: common.DtypeOpt = "auto",
    base_tokenizer: common.BaseTokenizerOpt = None,
    nudger_tokenizer: common.NudgerTokenizerOpt = None,
) -> None:
    """Serve over an OpenAI-compatible HTTP API: /v1/chat/completions and /v1/completions (streaming), /v1/models, /health, /metrics, and a playground page at /."""
    from ..serving.app import Limits, create_app, create_plain_app, run_server

    origins = allowed_origins or []
    if plain is not None:
        from ..loading import load_model

        try:
            model, tokenizer = load_model(_converted(plain), device_map=device)
        except NudgingError as exc:
            fail(str(exc))
        application = create_plain_app(model, tokenizer, model_name or plain, max_queue=max_queue, api_key=api_key, allowed_origins=origins)
    else:
        config = build_config(gamma=gamma, max_new_tokens=DEFAULTS.max_new_tokens, temperature=DEFAULTS.temperature, top_p=DEFAULTS.top_p, seed=None, stop=None, system=None, policy=policy)
        limits = Limits(max_tokens=max_tokens, timeout=request_timeout)
        pair = common.load_nudger(base, nudger, device, compile, dtype, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
        application = create_app(pair, config=config.with_tool_settings(pair.config), model_name=model_name or "nudging", max_queue=max_queue, max_batch=max_batch, limits=limits, api_key=api_key, allowed_origins=origins)
    run_server(application, host, port)
