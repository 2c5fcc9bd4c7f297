"""ChatNudging: the nudged pair as a LangChain chat model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from langchain_core.utils.utils import LC_ID_PREFIX
from nudging import Result
from nudging.tools import CallFilter, offered

from ._common import NudgingParams, result_metadata
from ._structured import structured_parser

_ROLES: dict[type[BaseMessage], str] = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant", ToolMessage: "tool"}


def _text(message: BaseMessage) -> str:
    """A message's text; non-text content (images, audio, files) is refused rather than dropped."""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") in ("tool_use", "tool_call"):
            continue  # a call's own block: the call itself travels in AIMessage.tool_calls
        else:
            raise ValueError(f"ChatNudging takes text only; got a {block.get('type')!r} content block")
    return "".join(parts)


def to_engine_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the engine's role/content dicts (it renders both models' templates)."""
    out = []
    for m in messages:
        role = m.role if isinstance(m, ChatMessage) else next((r for t, r in _ROLES.items() if isinstance(m, t)), None)
        if role is None:
            raise ValueError(f"ChatNudging cannot render a {type(m).__name__}")
        msg: dict[str, Any] = {"role": role, "content": _text(m)}
        if isinstance(m, AIMessage) and m.tool_calls:
            msg["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": json.dumps(c["args"], ensure_ascii=False)}}
                for c in m.tool_calls
            ]
        out.append(msg)
    return out


def _lc_calls(result: Result) -> list[Any]:
    return [tool_call(name=c["function"]["name"], args=json.loads(c["function"]["arguments"]), id=c["id"]) for c in result.tool_calls]


def _lc_invalid(result: Result) -> list[Any]:
    """Calls the model wrote that are not valid (cut by the budget, bad arguments), with their error."""
    return [invalid_tool_call(name=c["function"]["name"], args=c["function"]["arguments"], id=c["id"], error=c["error"]) for c in result.invalid_tool_calls]


def _usage(result: Result) -> UsageMetadata:
    s = result.stats
    return UsageMetadata(input_tokens=s.prompt_tokens, output_tokens=s.output_tokens, total_tokens=s.prompt_tokens + s.output_tokens)


class ChatNudging(NudgingParams, BaseChatModel):
    """Chat with a base model that writes most of the answer, nudged by a small chat model where it is uncertain.

    System/human/AI/tool messages become one conversation: the nudger sees it in its chat template,
    the base in its plain question/answer template. `bind_tools` describes tools to both models
    and a grammar makes every call well formed (`AIMessage.tool_calls`, streamed
    `tool_call_chunks`); `with_structured_output` constrains the answer to a schema, by a forced
    tool call ("function_calling") or by the schema itself ("json_schema", "json_mode").

    `batch`/`abatch` decode all inputs together (`Nudger.generate_batch`, with LangChain's
    callbacks per input); with a cache, a rate limiter, `streaming` or `return_exceptions` they
    fall back to LangChain's one call per input. Token counts use the base model's tokenizer.

    `response_metadata` carries `spans` (answer text by source, as dicts), `stats`, `nudge_share`,
    `finish_reason` and the exact `prompts`. `usage_metadata` counts ids of the base model's view:
    input tokens are the base prompt's ids (the nudger's prompt is tokenized differently and not
    counted), output tokens the answer's ids.

    Example:
        ```python
        chat = ChatNudging.default(max_tokens=64)
        chat.invoke([("system", "Be brief."), ("human", "Why is the sky blue?")])
        ```
    """

    streaming: bool = False
    """Whether `invoke` streams internally (so callbacks see every token)."""

    @property
    def _llm_type(self) -> str:
        return "nudging-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self.nudging_params

    def _metadata(self, result: Result) -> dict[str, Any]:
        return {"model_name": self.model_name, **result_metadata(result)}

    def _message(self, result: Result) -> AIMessage:
        return AIMessage(
            content=result.content, tool_calls=_lc_calls(result), invalid_tool_calls=_lc_invalid(result), usage_metadata=_usage(result), response_metadata=self._metadata(result)
        )

    @staticmethod
    def _chunk(text: str, pieces: list[dict[str, Any]]) -> ChatGenerationChunk | None:
        """A streamed chunk: content, and each call whole once it is complete and valid (a partial
        call would be parsed by LangChain as a valid-looking one)."""
        if not (text or pieces):
            return None
        calls = [tool_call_chunk(name=p["name"], args=p["arguments"], id=p["id"], index=p["index"]) for p in pieces]
        return ChatGenerationChunk(message=AIMessageChunk(content=text, tool_call_chunks=calls))

    def _last_chunk(self, result: Result, calls: CallFilter) -> ChatGenerationChunk:
        # Usage and metadata ride on one closing chunk so that summing chunks counts them once.
        # Calls that were not valid are never streamed: the metadata lists them (and says "length" when cut).
        held, pieces = calls.finish(result)
        chunks = [tool_call_chunk(name=p["name"], args=p["arguments"], id=p["id"], index=p["index"]) for p in pieces]
        meta = self._metadata(result)
        if result.invalid_tool_calls:
            meta["invalid_tool_calls"] = _lc_invalid(result)
        return ChatGenerationChunk(
            message=AIMessageChunk(content=held, tool_call_chunks=chunks, chunk_position="last", usage_metadata=_usage(result), response_metadata=meta)
        )

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, AIMessage]:
        """Describe tools to both models; tool_choice "auto", "any"/"required", "none", a tool name,
        or True (the single tool). Calls are grammar-forced to name a tool with valid arguments."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is True:
            tool_choice = formatted[0]["function"]["name"] if len(formatted) == 1 else "required"
        params = {"tools": formatted, "tool_choice": tool_choice or None, "parallel_tool_calls": parallel_tool_calls}
        return self.bind(**{k: v for k, v in params.items() if v is not None}, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[Any, Any]:
        """Answers as `schema` (a Pydantic model, TypedDict, or JSON schema), always valid under
        constraints: "function_calling" forces a call of a tool shaped like the schema,
        "json_schema" constrains the text to the schema, "json_mode" to any JSON object. An answer
        the budget cut (finish_reason "length") or that does not validate raises
        OutputParserException (with include_raw: returned as "parsing_error"), never a partial object."""
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        if method == "function_calling":
            tool = convert_to_openai_tool(schema)
            llm = self.bind_tools([tool], tool_choice=tool["function"]["name"], parallel_tool_calls=False, ls_structured_output_format={"kwargs": {"method": method}, "schema": tool})
        elif method == "json_schema":
            js = schema.model_json_schema() if pydantic else convert_to_json_schema(schema)
            fmt = {"type": "json_schema", "json_schema": {"name": js.get("title", "output"), "schema": js}}
            llm = self.bind(response_format=fmt, ls_structured_output_format={"kwargs": {"method": method}, "schema": schema})
        elif method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"}, ls_structured_output_format={"kwargs": {"method": method}, "schema": schema})
        else:
            raise ValueError(f"method must be 'function_calling', 'json_schema' or 'json_mode', got {method!r}")
        parser = RunnableLambda(structured_parser(schema, method))
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        failed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([failed], exception_key="parsing_error")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        result = self.nudger.generate(to_engine_messages(messages), **self.engine_overrides(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=self._message(result))])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        result = await self.nudger.agenerate(to_engine_messages(messages), **self.engine_overrides(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=self._message(result))])

    # BaseChatModel fires on_llm_new_token for each chunk itself, so these only yield.
    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        params = self.engine_overrides(stop, kwargs)
        calls = self._call_filter(params)
        with self.nudger.stream(to_engine_messages(messages), **params) as stream:
            for event in stream:
                if chunk := self._chunk(*calls.feed(event.text)):
                    yield chunk
        assert stream.result is not None
        yield self._last_chunk(stream.result, calls)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        params = self.engine_overrides(stop, kwargs)
        calls = self._call_filter(params)
        async for item in self.nudger.astream(to_engine_messages(messages), **params):
            if isinstance(item, Result):
                yield self._last_chunk(item, calls)
            elif chunk := self._chunk(*calls.feed(item.text)):
                yield chunk

    def _call_filter(self, params: dict[str, Any]) -> CallFilter:
        """Splits this call's stream into content and tool calls, as the engine parses the whole answer."""
        cfg = self.nudger.config.merged(**params)
        tools = offered(cfg) or ()
        return CallFilter(bool(tools), tools)

    def get_num_tokens_from_messages(self, messages: list[BaseMessage], tools: Sequence[Any] | None = None) -> int:
        """The ids of the base model's prompt for `messages` (what `usage_metadata.input_tokens` counts)."""
        config = self.engine_config().merged(tools=[convert_to_openai_tool(t) for t in tools]) if tools else self.engine_config()
        return len(self.nudger.prompt_ids(to_engine_messages(messages), config)["base"])

    # -- batches: one generate_batch, callbacks per input ------------------------------------
    def _batchable(self, inputs: Sequence[Any], return_exceptions: bool) -> bool:
        return len(inputs) > 1 and not (return_exceptions or self.streaming or self.rate_limiter is not None or self.cache or (self.cache is None and get_llm_cache() is not None))

    def _batch_starts(self, inputs: Sequence[Any], config: RunnableConfig | list[RunnableConfig] | None, stop: list[str] | None) -> tuple[list[list[BaseMessage]], list[tuple[Any, dict[str, Any]]]]:
        """Each input's messages, and (callback manager, on_chat_model_start arguments) for it."""
        messages = [self._convert_input(x).to_messages() for x in inputs]
        starts = []
        for msgs, cfg in zip(messages, get_config_list(config, len(inputs))):
            args = {"invocation_params": {**self._identifying_params, "stop": stop}, "options": {"stop": stop}, "name": cfg.get("run_name"), "run_id": cfg.get("run_id"), "batch_size": len(inputs)}
            starts.append(((cfg.get("callbacks"), self.callbacks, self.verbose, cfg.get("tags"), self.tags, cfg.get("metadata"), self.metadata), {"messages": [msgs], **args}))
        return messages, starts

    def _batch_message(self, result: Result, run_id: Any) -> AIMessage:
        message = self._message(result)
        message.id = f"{LC_ID_PREFIX}-{run_id}"
        return message

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not self._batchable(inputs, return_exceptions):
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        stop = kwargs.pop("stop", None)
        overrides = self.engine_overrides(stop, kwargs)
        messages, starts = self._batch_starts(inputs, config, stop)
        runs = [CallbackManager.configure(*conf).on_chat_model_start(self._serialized, **args)[0] for conf, args in starts]
        try:
            results = self.nudger.generate_batch([to_engine_messages(m) for m in messages], **overrides)
        except BaseException as exc:
            for run in runs:
                run.on_llm_error(exc)
            raise
        out = []
        for run, result in zip(runs, results):
            out.append(self._batch_message(result, run.run_id))
            run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=out[-1])]]))
        return out

    async def abatch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None, *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not self._batchable(inputs, return_exceptions):
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        stop = kwargs.pop("stop", None)
        overrides = self.engine_overrides(stop, kwargs)
        messages, starts = self._batch_starts(inputs, config, stop)
        runs = [(await AsyncCallbackManager.configure(*conf).on_chat_model_start(self._serialized, **args))[0] for conf, args in starts]
        try:
            results = await self.nudger.agenerate_batch([to_engine_messages(m) for m in messages], **overrides)
        except BaseException as exc:
            for run in runs:
                await run.on_llm_error(exc)
            raise
        out = []
        for run, result in zip(runs, results):
            out.append(self._batch_message(result, run.run_id))
            await run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=out[-1])]]))
        return out
