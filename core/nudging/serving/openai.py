"""Request bodies of the OpenAI-compatible API: the fields this server reads, the OpenAI
parameters it does not implement, and its limits.

Unknown fields are accepted and ignored (clients send many optional ones), except the OpenAI
parameters in `UNSUPPORTED`: set to anything but their neutral value (None, 0, false, empty, or the
value listed) they get a 400 naming them, never a silent drop. `gamma` and `top_k` are extensions
(send them with the openai client's `extra_body`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# parameter -> (why, neutral values besides None/0/false/""/[]/{}); skipped where the request model has the field
UNSUPPORTED: dict[str, tuple[str, tuple[Any, ...]]] = {
    "tools": ("tool calling is on /v1/chat/completions", ()),
    "tool_choice": ("tool calling is on /v1/chat/completions", ("none", "auto")),
    "parallel_tool_calls": ("tool calling is on /v1/chat/completions", (True,)),
    "functions": ("the legacy function-calling API is not implemented: send tools", ()),
    "function_call": ("the legacy function-calling API is not implemented: send tool_choice", ("none", "auto")),
    "response_format": ("structured output is on /v1/chat/completions", ({"type": "text"},)),
    "presence_penalty": ("penalties are not implemented", ()),
    "frequency_penalty": ("penalties are not implemented", ()),
    "repetition_penalty": ("penalties are not implemented", (1, 1.0)),
    "logit_bias": ("logit biases are not implemented", ()),
    "top_logprobs": ("logprobs are not available for nudged text", ()),
    "best_of": ("one choice per request", (1,)),
    "suffix": ("insertion is not implemented", ()),
    "audio": ("text output only", ()),
    "modalities": ("text output only", (["text"],)),
    "prediction": ("predicted outputs are not implemented", ()),
}
_NEUTRAL = (None, 0, False, "", [], {})

TEMPERATURE_MAX = 2.0  # OpenAI's range is 0..2
MAX_STOP = 4  # OpenAI's limit
MAX_STOP_CHARS = 128  # every stop string is checked against the accepted text at every step
SEED_RANGE = (-(2**63), 2**63 - 1)  # 64-bit signed, as OpenAI's


class StreamOptions(BaseModel):
    include_usage: bool = False


class RequestBase(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    gamma: float | None = None


def refusal(req: RequestBase) -> tuple[str, str, str] | None:
    """(param, message, code) for the first parameter this server refuses, else None."""
    data = req.model_dump(exclude_unset=True)
    for name, (why, neutral) in UNSUPPORTED.items():
        if name in type(req).model_fields:  # this endpoint implements it
            continue
        value = data.get(name)
        if not any(value == n and type(value) is type(n) for n in _NEUTRAL) and value not in neutral:
            return name, f"{name} is not supported by this server: {why}", "unsupported_parameter"
    t = req.temperature
    if t is not None and not 0 <= t <= TEMPERATURE_MAX:
        return "temperature", f"temperature must be between 0 and {TEMPERATURE_MAX:g}, got {t!r}", "invalid_value"
    if req.seed is not None and not SEED_RANGE[0] <= req.seed <= SEED_RANGE[1]:
        return "seed", f"seed must be a 64-bit signed integer ({SEED_RANGE[0]} to {SEED_RANGE[1]}), got {req.seed}", "invalid_value"
    stop = [req.stop] if isinstance(req.stop, str) else req.stop or []
    if len(stop) > MAX_STOP:
        return "stop", f"stop takes at most {MAX_STOP} strings, got {len(stop)}", "invalid_value"
    if any(len(s) > MAX_STOP_CHARS for s in stop):
        return "stop", f"stop strings are limited to {MAX_STOP_CHARS} characters, got one of {max(map(len, stop))}", "invalid_value"
    return None


class CompletionRequest(RequestBase):
    # str, a batch of strings, or token ids / a batch of token-id prompts (plain single-model mode only)
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None
    # vLLM extensions, used by the plain single-model mode
    return_tokens_as_token_ids: bool = False
    return_token_ids: bool = False
    add_special_tokens: bool = True


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn's calls (OpenAI format)


class ChatCompletionRequest(RequestBase):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
