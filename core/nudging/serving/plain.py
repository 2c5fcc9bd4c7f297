"""One plain model behind vLLM's `/v1/completions` shape, with token logprobs.

It exists so the remote backend can be tested against a real server process with a tiny model:
the response mirrors vLLM's legacy completions response — `logprobs` holds `tokens`,
`token_logprobs`, `top_logprobs` and `text_offset`; `echo` with `max_tokens: 0` scores a prompt;
the vLLM extensions `return_tokens_as_token_ids` (tokens as "token_id:N"), `return_token_ids`
(`prompt_token_ids` / `token_ids` in the choice) and `add_special_tokens` are honoured, and a
prompt may be token ids or a batch of token-id prompts (one choice each, run in turn). Logprobs are the model's raw log-softmax (before temperature/top-p), as
vLLM reports by default; the sampled or prompt token comes first in each `top_logprobs` dict, then
the top-k (so k or k+1 entries). Like vLLM, a generated EOS is kept in the tokens (and counted)
but not in the text; text cut by a stop string keeps the token that completed it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..backends.local import LocalModel
from ..config import SamplingParams
from ..decoding.sampling import Sampler
from ..errors import ConfigError
from ..text.sync import IncrementalDecoder, decode
from .http import (
    APIError,
    Submission,
    base_app,
    check_model,
    check_single_choice,
    new_id,
    now,
    read_request,
)
from .openai import CompletionRequest
from .worker import Done, Job, Worker

MAX_LOGPROBS = 20  # vLLM's default --max-logprobs
LOGPROB_FLOOR = -9999.0  # JSON has no -inf; OpenAI and vLLM send this instead


@dataclass(frozen=True)
class PlainJob:
    ids: list[int]
    prompt_text: str
    max_tokens: int
    echo: bool
    logprobs: int | None
    sampling: SamplingParams
    seed: int | None
    stop: tuple[str, ...]


@dataclass
class Scored:
    """A position's log-probability of its token, and the top-k alternatives."""

    logprob: float
    top: list[tuple[int, float]]


@dataclass
class PlainOutput:
    token_ids: list[int]
    text: str
    finish_reason: str
    prompt_scores: list[Scored | None] | None
    scores: list[Scored]


def _score(logprobs: torch.Tensor, token: int, k: int) -> Scored:
    top = torch.topk(logprobs, k) if k else None
    pairs = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
    return Scored(float(logprobs[token]), pairs)


@torch.inference_mode()
def complete(lm: LocalModel, job: PlainJob, cancel: threading.Event | None = None) -> PlainOutput:
    """Run one completion: score the prompt if asked, then decode with a KV cache."""
    session = lm.session()
    try:
        k = job.logprobs
        score_prompt = job.echo and k is not None
        logits = session.forward(job.ids, keep=len(job.ids) if score_prompt else 1)
        prompt_scores = None
        if score_prompt:
            lps = torch.log_softmax(logits[:-1], dim=-1)
            prompt_scores = [None] + [_score(lps[i], job.ids[i + 1], k) for i in range(len(job.ids) - 1)]
        row = logits[-1]
        sampler = Sampler(job.sampling, job.seed)
        ids = list(job.ids)
        decoder = IncrementalDecoder(lm.tokenizer, ids)
        out: list[int] = []
        scores: list[Scored] = []
        text, finish = "", "length"
        longest = max((len(s) for s in job.stop), default=0)
        while len(out) < job.max_tokens and not (cancel and cancel.is_set()):
            token = sampler.pick(row)
            out.append(token)
            if k is not None:
                scores.append(_score(torch.log_softmax(row, dim=-1), token, k))
            if token in lm.eos_ids:
                finish = "stop"
                break
            ids.append(token)
            start = max(0, len(text) - longest)
            text += decoder.step(ids)
            hits = [i for i in (text.find(s, start) for s in job.stop) if i >= 0]
            if hits:
                text, finish = text[: min(hits)], "stop"
                break
            if len(out) < job.max_tokens:
                row = session.forward([token])[0]
        return PlainOutput(out, text, finish, prompt_scores, scores)
    finally:
        session.close()


def _piece(tokenizer: Any, context: list[int], token: int) -> str:
    """The text `token` adds after `context` (decoded in a short window, as a detokenizer would)."""
    window = context[-4:]
    prefix = decode(tokenizer, window)
    full = decode(tokenizer, window + [token])
    return full[len(prefix) :] if full.startswith(prefix) else decode(tokenizer, [token])


def logprobs_object(tokenizer: Any, ids: list[int], scores: list[Scored | None], start: int, as_ids: bool) -> dict[str, Any]:
    """vLLM's completion `logprobs` for `ids[start:]` (scores[i] scores ids[start + i])."""
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    decoder = IncrementalDecoder(tokenizer, ids[:start])
    offset = 0

    def name(token: int, context: list[int]) -> str:
        return f"token_id:{token}" if as_ids else _piece(tokenizer, context, token)

    for i, score in enumerate(scores):
        pos = start + i
        token = ids[pos]
        piece = f"token_id:{token}" if as_ids else decoder.step(ids[: pos + 1])
        tokens.append(piece)
        text_offset.append(offset)
        offset += len(piece)
        if score is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        token_logprobs.append(max(score.logprob, LOGPROB_FLOOR))
        top = {piece: max(score.logprob, LOGPROB_FLOOR)}
        for alt, lp in score.top:
            if alt != token:
                top.setdefault(name(alt, ids[:pos]), max(lp, LOGPROB_FLOOR))
        top_logprobs.append(top)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": text_offset}


def serve_plain(lm: LocalModel, jobs: list[Job], take: Any = None) -> None:
    """The worker's runner for the plain server: one completion at a time (`take` unused: no joining)."""
    for job in jobs:
        try:
            job.finish([complete(lm, p, job.cancel) for p in job.payload])
        except Exception as exc:
            job.fail(exc)


def create_plain_app(model: Any, tokenizer: Any, model_name: str, *, max_queue: int = 16, api_key: str | None = None, allowed_origins: Sequence[str] = ()) -> FastAPI:
    """Serve one transformers causal LM on `/v1/completions` with vLLM-style logprobs."""
    lm = LocalModel(model, tokenizer)
    worker = Worker(partial(serve_plain, lm), max_queue=max_queue)
    app = base_app(model_name, worker, title=f"nudging plain server: {model_name}", api_key=api_key, allowed_origins=allowed_origins, max_model_len=lm.context_window)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> JSONResponse:
        req = await read_request(request, CompletionRequest)
        check_model(req.model, model_name)
        check_single_choice(req.n)
        if req.stream:
            raise APIError(400, "stream is not supported by the plain model server", param="stream", code="unsupported_value")
        jobs = await run_in_threadpool(_jobs, lm, req)
        sub = Submission(request, worker, jobs)
        try:
            item = await sub.next()
        finally:
            sub.close()
        assert isinstance(item, Done)
        body = await run_in_threadpool(_response, lm, req, jobs, item.result)
        return JSONResponse({"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model_name, **body})

    return app


def _jobs(lm: LocalModel, req: CompletionRequest) -> list[PlainJob]:
    """One job per prompt of a request (a batch of token-id prompts gives several)."""
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return [_job(lm, req, p) for p in prompt]
    return [_job(lm, req, prompt)]


def _job(lm: LocalModel, req: CompletionRequest, prompt: Any) -> PlainJob:
    """Validate a request and tokenize one prompt."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            raise APIError(400, "prompt must be one string or one list of token ids (batches are not supported)", param="prompt", code="unsupported_value")
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise APIError(400, "prompt is empty", param="prompt", code="invalid_value")
        ids = lm.tokenizer.encode(prompt, add_special_tokens=req.add_special_tokens)
        text = prompt
    else:
        ids = list(prompt)
        vocab = lm.model.get_input_embeddings().num_embeddings
        if not ids or not all(0 <= t < vocab for t in ids):
            raise APIError(400, f"prompt token ids must be a non-empty list of ids in [0, {vocab})", param="prompt", code="invalid_value")
        text = decode(lm.tokenizer, ids)
    if not ids:
        raise APIError(400, "prompt has no tokens", param="prompt", code="invalid_value")
    max_tokens = 16 if req.max_tokens is None else req.max_tokens  # OpenAI's and vLLM's default
    if max_tokens < 0 or (max_tokens == 0 and not req.echo):
        raise APIError(400, f"max_tokens must be at least 1 (0 only with echo, to score the prompt), got {max_tokens}", param="max_tokens", code="invalid_value")
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_LOGPROBS:
        raise APIError(400, f"logprobs must be between 0 and {MAX_LOGPROBS}, got {req.logprobs}", param="logprobs", code="invalid_value")
    window = lm.context_window
    if window and len(ids) + max_tokens > window:
        raise APIError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested {len(ids) + max_tokens} tokens "
            f"({len(ids)} in the prompt, {max_tokens} for the completion).",
            param="prompt",
            code="context_length_exceeded",
        )
    stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if any(not s for s in stop):
        raise APIError(400, "stop strings must be non-empty", param="stop", code="invalid_value")
    try:
        sampling = SamplingParams(1.0 if req.temperature is None else req.temperature, 1.0 if req.top_p is None else req.top_p, req.top_k or 0)
    except ConfigError as exc:
        raise APIError(400, str(exc), param=str(exc).split()[0], code="invalid_value") from None
    return PlainJob(ids, text, max_tokens, req.echo, req.logprobs, sampling, req.seed, tuple(stop))


def _response(lm: LocalModel, req: CompletionRequest, jobs: list[PlainJob], outs: list[PlainOutput]) -> dict[str, Any]:
    choices = []
    for index, (job, out) in enumerate(zip(jobs, outs)):
        ids = job.ids + out.token_ids
        logprobs = None
        if job.logprobs is not None:
            scores = (out.prompt_scores or []) + out.scores
            logprobs = logprobs_object(lm.tokenizer, ids, scores, 0 if req.echo else len(job.ids), req.return_tokens_as_token_ids)
        choice: dict[str, Any] = {
            "index": index,
            "text": (job.prompt_text if req.echo else "") + out.text,
            "logprobs": logprobs,
            "finish_reason": out.finish_reason,
            "stop_reason": None,
        }
        if req.return_token_ids:
            choice["prompt_token_ids"] = job.ids
            choice["token_ids"] = out.token_ids
        choices.append(choice)
    n_prompt, n_out = sum(len(j.ids) for j in jobs), sum(len(o.token_ids) for o in outs)
    return {"choices": choices, "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}}
