"""ChatNudging tool calling and structured output on the tiny pairs: formats, never content."""

from __future__ import annotations

import json

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_nudging import ChatNudging
from langchain_nudging._structured import structured_parser
from langchain_nudging.chat_models import to_engine_messages
from nudging import Nudger
from pydantic import BaseModel, Field


class get_weather(BaseModel):  # noqa: N801 - a tool's name as a model would call it
    """Current weather in a city."""

    city: str = Field(max_length=10)  # bounded: random tiny models would otherwise write until the budget


class add(BaseModel):  # noqa: N801
    """Add two integers."""

    a: int = Field(ge=0, le=99)
    b: int = Field(ge=0, le=99)


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=8)
    ok: bool


@pytest.fixture
def chat(pair: Nudger) -> ChatNudging:
    return ChatNudging(nudger=pair, gamma=0.5, max_tokens=120)


def test_bind_tools_gives_tool_calls(chat: ChatNudging):
    msg = chat.bind_tools([get_weather, add], tool_choice="any", parallel_tool_calls=False).invoke("Weather in Paris?")
    assert msg.content == "" and len(msg.tool_calls) == 1
    call = msg.tool_calls[0]
    assert call["name"] in {"get_weather", "add"} and call["id"] and call["type"] == "tool_call"
    assert set(call["args"]) == ({"city"} if call["name"] == "get_weather" else {"a", "b"})


def test_streamed_tool_call_chunks_add_up(chat: ChatNudging):
    bound = chat.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    chunks = list(bound.stream("Weather in Paris?"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert all(c.content == "" for c in chunks)  # the call's text never leaks into content
    assert [c["name"] for c in full.tool_calls] == ["get_weather"] and isinstance(full.tool_calls[0]["args"]["city"], str)
    assert full.tool_call_chunks[0]["index"] == 0


def test_auto_streams_plain_text(chat: ChatNudging):
    bound = chat.bind_tools([get_weather], tool_choice="auto")
    msg = bound.invoke("Say hi.", max_tokens=20)
    streamed = "".join(c.content for c in bound.stream("Say hi.", max_tokens=20))
    if not msg.tool_calls:
        assert streamed == msg.content


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(chat: ChatNudging, method):
    person = chat.with_structured_output(Person, method=method).invoke("Describe a person.")
    assert isinstance(person, Person)
    raw = chat.with_structured_output(Person, method=method, include_raw=True).invoke("Describe a person.")
    assert isinstance(raw["raw"], AIMessage) and isinstance(raw["parsed"], Person) and raw["parsing_error"] is None
    as_dict = chat.with_structured_output(Person.model_json_schema(), method=method).invoke("Describe a person.")
    assert set(as_dict) == {"name", "ok"}


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_a_cut_answer_raises(pair: Nudger, method):
    """An answer the budget cut is never a valid-looking object (main's partial-JSON parser returned
    one for json_schema/json_mode, None for function_calling): OutputParserException, or the error
    with include_raw."""
    chat = ChatNudging(nudger=pair, gamma=0.5, max_tokens=4)  # too few ids for a Person to close
    with pytest.raises(OutputParserException, match="cut by the token budget"):
        chat.with_structured_output(Person, method=method).invoke("Describe a person.")
    raw = chat.with_structured_output(Person, method=method, include_raw=True).invoke("Describe a person.")
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], OutputParserException)
    assert raw["raw"].response_metadata["finish_reason"] == "length"


def test_json_mode_parses_strictly():
    """json_mode's parser (any object: even "{}" closes in one or two ids, so a real cut is made here)."""
    parse = structured_parser(None, "json_mode")
    with pytest.raises(OutputParserException, match="cut by the token budget"):
        parse(AIMessage('{"name": "Ada", "bio": "Ada Lovel', response_metadata={"finish_reason": "length"}))
    with pytest.raises(OutputParserException, match="not JSON"):
        parse(AIMessage('{"name": "Ada", "bio": "Ada Lovel', response_metadata={"finish_reason": "stop"}))
    assert parse(AIMessage('{"name": "Ada"}', response_metadata={"finish_reason": "stop"})) == {"name": "Ada"}


def test_openai_finish_reasons(chat: ChatNudging):
    """response_metadata["finish_reason"] speaks OpenAI ("stop", "length", "tool_calls"; main: the
    engine's "eos"); a cut call is an invalid_tool_call, never a tool call."""
    bound = chat.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    msg = bound.invoke("Weather in Paris?")
    assert msg.response_metadata["finish_reason"] == "tool_calls" and msg.tool_calls
    cut = bound.invoke("Weather in Paris?", max_tokens=5)
    assert cut.response_metadata["finish_reason"] == "length" and not cut.tool_calls
    assert cut.invalid_tool_calls and cut.invalid_tool_calls[0]["error"]
    streamed = list(bound.stream("Weather in Paris?", max_tokens=5))
    assert not sum(streamed[1:], streamed[0]).tool_calls and streamed[-1].response_metadata["finish_reason"] == "length"
    text = chat.invoke("Say hi.", max_tokens=3)
    assert text.response_metadata["finish_reason"] in ("stop", "length")


def test_json_mode(chat: ChatNudging):
    out = chat.with_structured_output(None, method="json_mode").invoke("A JSON object, please.", max_tokens=200)
    assert isinstance(out, dict)


def test_tool_turns_reach_the_engine():
    msgs = [HumanMessage("Weather?"), AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}]), ToolMessage("18 C", tool_call_id="c1")]
    out = to_engine_messages(msgs)
    assert out[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}
    assert out[2] == {"role": "tool", "content": "18 C"}
