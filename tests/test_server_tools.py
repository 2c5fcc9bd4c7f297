"""Tool calling and structured output over the OpenAI-compatible server, with the official client."""

from __future__ import annotations

import json

import openai
import pytest
from nudging import Nudger, NudgingConfig
from nudging.serving import create_app, serve_in_thread
from pydantic import BaseModel, Field
from tiny_models import tiny_pair

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"]},
        },
    }
]
ASK = [{"role": "user", "content": "Weather in Paris?"}]


class Person(BaseModel):
    name: str = Field(max_length=8)
    ok: bool


@pytest.fixture(scope="module")
def nudger() -> Nudger:
    return Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.4, draft_tokens=8, max_new_tokens=120))


@pytest.fixture(scope="module")
def client(nudger) -> openai.OpenAI:
    with serve_in_thread(create_app(nudger, model_name="tiny")) as url:
        yield openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)


def test_tool_calls_in_openai_format(client, nudger):
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert set(json.loads(call.function.arguments)) == {"city"}
    ref = nudger.generate(ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert ref.tool_calls[0]["function"] == {"name": call.function.name, "arguments": call.function.arguments}


def test_streamed_tool_call_deltas(client):
    """Arguments stream as OpenAI's `delta.tool_calls[0].function.arguments` pieces as they are written
    (main sent the whole call in the last chunk); the first piece names the call."""
    chunks = list(client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False, stream=True))
    assert not "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) > 2 and {d.index for d in deltas} == {0}
    assert deltas[0].function.name == "get_weather" and deltas[0].id.startswith("call_") and all(d.id is None for d in deltas[1:])
    assert set(json.loads("".join(d.function.arguments for d in deltas))) == {"city"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_helper_equals_the_whole_answer(client):
    """The openai client's stream helper assembles the same message as a request without streaming."""
    kwargs = dict(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    whole = client.chat.completions.create(**kwargs).choices[0]
    with client.chat.completions.stream(**kwargs) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion().choices[0]
    assert events.count("tool_calls.function.arguments.delta") > 1
    assert final.finish_reason == whole.finish_reason == "tool_calls" and not final.message.content
    assert [(c.function.name, c.function.arguments) for c in final.message.tool_calls] == [(c.function.name, c.function.arguments) for c in whole.message.tool_calls]


def test_a_call_cut_by_the_budget_is_reported_not_returned(client):
    """finish_reason "length", no valid-looking call, the cut call in `nudging.invalid_tool_calls`;
    its text never becomes content (main returned the raw block as content)."""
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=6)
    choice = r.choices[0]
    assert choice.finish_reason == "length" and not choice.message.tool_calls
    assert "<tool_call>" not in (choice.message.content or "")
    (bad,) = r.model_extra["nudging"]["invalid_tool_calls"]
    assert "ended inside" in bad["error"]


def test_tool_results_round_trip(client):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    msgs = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, tools=TOOLS, max_tokens=8)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_parse_with_a_pydantic_model(client):
    r = client.chat.completions.parse(model="tiny", messages=[{"role": "user", "content": "A person, as JSON."}], response_format=Person)
    assert isinstance(r.choices[0].message.parsed, Person)


def test_json_object(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "JSON please."}], response_format={"type": "json_object"}, max_tokens=200)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_bad_tool_choice_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
