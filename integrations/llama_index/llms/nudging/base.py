"""NudgingLLM: a LlamaIndex LLM whose answers a base model writes and a small chat model nudges.

Chat messages go to the engine as role/content dicts, so each model gets its own prompt format
(the nudger its chat template, the base its plain question/answer text) instead of LlamaIndex's
generic "role: content" rendering. Async methods run the engine in a worker thread so the event
loop keeps running; cancelling the awaiting task stops generation at the engine's next step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import fields
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from nudging import Nudger, NudgingConfig, Result, Stream, StreamEvent
from nudging.tools import CallFilter, offered

Prompt = str | list[dict[str, str]]

# LlamaIndex roles -> the engine's four roles
_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}
_CONFIG_FIELDS = frozenset(f.name for f in fields(NudgingConfig))


def to_engine_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """LlamaIndex ChatMessages as the engine's role/content dicts (text blocks only; an assistant
    turn's OpenAI-style `additional_kwargs["tool_calls"]` kept)."""
    out = []
    for m in messages:
        msg: dict[str, Any] = {"role": _ROLES[MessageRole(m.role)], "content": m.content or ""}
        if msg["role"] == "assistant" and m.additional_kwargs.get("tool_calls"):
            msg["tool_calls"] = m.additional_kwargs["tool_calls"]
        out.append(msg)
    return out


def _extras(result: Result) -> dict[str, Any]:
    """What a response carries besides its text: OpenAI's `finish_reason` ("stop", "length",
    "tool_calls"), the spans, stats and exact prompts."""
    return {
        "finish_reason": result.finish_reason,
        "spans": [{"text": s.text, "source": s.source} for s in result.spans],
        "stats": result.stats.to_dict(),
        "prompts": dict(result.prompts),
    }


class NudgingLLM(FunctionCallingLLM):
    """A LlamaIndex LLM backed by a `nudging.Nudger` (base model + small aligned nudger).

    A function-calling LLM: tools are described to both models and a grammar forces well-formed
    calls, returned OpenAI-style in `message.additional_kwargs["tool_calls"]` (so `FunctionAgent`
    and `structured_predict` work).

    Per-call keyword arguments may set any `NudgingConfig` field (gamma, max_new_tokens, temperature,
    seed, ...); `stop` strings are added to the constructor's. Responses carry the provenance
    (`spans`), the engine's `stats` and the exact `prompts` in `additional_kwargs`.
    """

    gamma: float | None = Field(default=None, description="Nudge when the base's top-1 probability is below this (None: the Nudger's default).")
    policy: Any = Field(default=None, exclude=True, description="A policy that decides instead of gamma, e.g. nudging.LearnedPolicy.load(path) (None: the Nudger's config).")
    max_new_tokens: int | None = Field(default=None, description="Answer budget in base-model tokens (None: the Nudger's default).", gt=0)
    temperature: float | None = Field(default=None, description="Sampling temperature; 0 is greedy (None: the Nudger's default).", ge=0)
    stop: list[str] = Field(default_factory=list, description="Stop strings applied to every call, e.g. ['Observation:'] for ReAct.")
    generate_kwargs: dict[str, Any] = Field(default_factory=dict, description="Other NudgingConfig overrides for every call.")

    _nudger: Nudger = PrivateAttr()

    def __init__(self, nudger: Nudger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._nudger = nudger
        self._config(self.generate_kwargs)  # bad settings fail here, not at the first call

    @classmethod
    def from_pretrained(cls, base: Any, nudger: Any, *, device_map: Any = None, dtype: Any = "auto", config: NudgingConfig | None = None, **kwargs: Any) -> NudgingLLM:
        """Load both models (HF ids, local dirs, .gguf files, "embedded:base"/"embedded:nudger")."""
        return cls(Nudger.from_pretrained(base=base, nudger=nudger, device_map=device_map, dtype=dtype, config=config), **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> NudgingLLM:
        """The embedded offline pair: gemma-3-270m nudged by SmolLM2-135M-Instruct."""
        return cls(Nudger.default(), **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "NudgingLLM"

    @property
    def nudger(self) -> Nudger:
        return self._nudger

    @property
    def metadata(self) -> LLMMetadata:
        # A prompt must fit both models: the smaller window is the real limit.
        windows = [w for w in (self._nudger.base.context_window, self._nudger.nudger.context_window) if w]
        return LLMMetadata(
            context_window=min(windows, default=DEFAULT_CONTEXT_WINDOW),
            num_output=self.max_new_tokens or self._nudger.config.max_new_tokens,
            model_name=f"nudging:{self._nudger.base.name}+{self._nudger.nudger.name}",
            is_chat_model=True,
            is_function_calling_model=True,
        )

    # -- tools ------------------------------------------------------------------------------
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str) else user_msg)
        choice = kwargs.pop("tool_choice", None) or ("required" if tool_required else "auto")
        return {
            "messages": messages,
            "tools": [t.metadata.to_openai_tool() for t in tools] or None,
            "tool_choice": choice,
            "parallel_tool_calls": allow_parallel_tool_calls,
            **kwargs,
        }

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected at least one tool call, got: {response.message.content!r}")
        return [ToolSelection(tool_id=c["id"], tool_name=c["function"]["name"], tool_kwargs=json.loads(c["function"]["arguments"])) for c in calls]

    def _calls(self, kwargs: dict[str, Any]) -> CallFilter:
        """Keeps a streamed answer's tool-call text out of its content (the last chunk carries the calls)."""
        return CallFilter(bool(offered(self._config(kwargs))))

    # -- engine plumbing ------------------------------------------------------------------
    def _config(self, kwargs: dict[str, Any]) -> NudgingConfig:
        """The Nudger's config with this LLM's settings and a call's keyword overrides applied.

        Keywords that are not NudgingConfig fields (LlamaIndex passes its own, e.g. `formatted`)
        are ignored.
        """
        fixed = {"gamma": self.gamma, "policy": self.policy, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}
        overrides = {**self.generate_kwargs, **{k: v for k, v in fixed.items() if v is not None}}
        overrides.update({k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS and k != "stop"})
        stop = [*self._nudger.config.stop, *self.stop, *_as_list(kwargs.get("stop"))]
        overrides["stop"] = tuple(dict.fromkeys(stop))
        if self.system_prompt is not None and overrides.get("system") is None:
            overrides["system"] = self.system_prompt
        return self._nudger.config.merged(**overrides)

    def _prompt(self, prompt: str, formatted: bool) -> str:
        return prompt if formatted else self.completion_to_prompt(prompt)

    def _events(self, prompt: Prompt, kwargs: dict[str, Any]) -> Iterator[StreamEvent | Result]:
        """Stream events, then the Result. Bad input or settings raise here, at call time; closing the
        iterator early cancels the engine's run."""
        return _drain(self._nudger.stream(prompt, self._config(kwargs)))

    def _aevents(self, prompt: Prompt, kwargs: dict[str, Any]) -> AsyncIterator[StreamEvent | Result]:
        """`_events` on a worker thread (`Nudger.astream`); leaving early (break, error, task
        cancelled) cancels the run."""
        return self._nudger.astream(prompt, self._config(kwargs))

    # -- completion -------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _response(self._nudger.generate(self._prompt(prompt, formatted), self._config(kwargs)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return _chunks(self._events(self._prompt(prompt, formatted), kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _response(await _last(self._aevents(self._prompt(prompt, formatted), kwargs)))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        return _achunks(self._aevents(self._prompt(prompt, formatted), kwargs))

    # -- chat -------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat(_response(self._nudger.generate(to_engine_messages(messages), self._config(kwargs))))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return (_chat(c) for c in _chunks(self._events(to_engine_messages(messages), kwargs), self._calls(kwargs)))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return _chat(_response(await _last(self._aevents(to_engine_messages(messages), kwargs))))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        chunks = _achunks(self._aevents(to_engine_messages(messages), kwargs), self._calls(kwargs))

        async def gen() -> ChatResponseAsyncGen:
            async for c in chunks:
                yield _chat(c)

        return gen()


# -- iteration ----------------------------------------------------------------------------------
def _drain(stream: Stream) -> Iterator[StreamEvent | Result]:
    with stream:
        yield from stream
    assert stream.result is not None
    yield stream.result


# -- responses ----------------------------------------------------------------------------------
def _as_list(stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _response(res: Result, delta: str | None = None) -> CompletionResponse:
    extras = _extras(res)
    if res.tool_calls:
        extras["tool_calls"] = res.tool_calls
    if res.invalid_tool_calls:  # cut by the budget or not matching the tool's schema: never passed on as calls
        extras["invalid_tool_calls"] = res.invalid_tool_calls
    return CompletionResponse(text=res.content or "", delta=delta, raw=res.to_dict(), additional_kwargs=extras)


def _chunk(text: str, delta: str, item: StreamEvent | Result) -> CompletionResponse:
    """One streamed chunk: cumulative text and a delta with its source (also as `raw`, which agents
    pass on in their stream events); the last chunk carries the spans, stats and any tool calls."""
    if isinstance(item, Result):
        return _response(item, delta=delta)
    return CompletionResponse(text=text, delta=delta, raw={"text": delta, "source": item.source}, additional_kwargs={"source": item.source})


def _chunks(items: Iterator[StreamEvent | Result], calls: CallFilter | None = None) -> CompletionResponseGen:
    calls = calls or CallFilter(False)
    text = ""
    for item in items:
        delta = calls.finish(item)[0] if isinstance(item, Result) else calls.feed(item.text)[0]
        text += delta
        if delta or isinstance(item, Result):
            yield _chunk(text, delta, item)


async def _achunks(items: AsyncIterator[StreamEvent | Result], calls: CallFilter | None = None) -> CompletionResponseAsyncGen:
    calls = calls or CallFilter(False)
    text = ""
    async for item in items:
        delta = calls.finish(item)[0] if isinstance(item, Result) else calls.feed(item.text)[0]
        text += delta
        if delta or isinstance(item, Result):
            yield _chunk(text, delta, item)


async def _last(items: AsyncIterator[StreamEvent | Result]) -> Result:
    """The Result at the end of an event stream (consumed to the end, so the worker is joined)."""
    item = None
    async for item in items:
        pass
    assert isinstance(item, Result)
    return item


def _chat(c: CompletionResponse) -> ChatResponse:
    """The chat form of a completion; spans and stats stay on the response, not the message (which
    agents keep in memory)."""
    calls = {"tool_calls": c.additional_kwargs["tool_calls"]} if "tool_calls" in c.additional_kwargs else {}
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=c.text, additional_kwargs=calls), delta=c.delta, raw=c.raw, additional_kwargs=c.additional_kwargs)
