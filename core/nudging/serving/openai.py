"""Request bodies of the OpenAI-compatible API: the fields this server reads.

Unknown fields are accepted and ignored (clients such as LangChain send many optional ones);
fields the server cannot honour are refused where the request is handled, with a clear 400.
`gamma` and `top_k` are extensions (send them with the openai client's `extra_body`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


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


class ChatCompletionRequest(RequestBase):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None
