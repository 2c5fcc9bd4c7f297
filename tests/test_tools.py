"""Tool calls in the engine: descriptions in both prompts, calls forced by the grammar and parsed
into OpenAI's form, tool_choice, parallel calls, tool results rendered back."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from nudging import Nudger
from nudging.errors import ConfigError
from nudging.prompts import chat_prompt
from nudging.config import BaseTemplate
from nudging.tools import could_be_call, parse_tool_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]},
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"]},
    },
}
TOOLS = [WEATHER, ADD]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def check_calls(res, names=("get_weather", "add")) -> None:
    assert res.tool_calls, res.text
    for call in res.tool_calls:
        assert call["type"] == "function" and call["id"].startswith("call_")
        assert call["function"]["name"] in names
        jsonschema.validate(json.loads(call["function"]["arguments"]), PARAMS[call["function"]["name"]])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_required_forces_valid_calls(pair: Nudger, gamma):
    res = pair.generate("Weather in Paris?", gamma=gamma, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, max_new_tokens=200)
    assert res.stats.stop_reason == "eos"
    check_calls(res)
    assert len(res.tool_calls) == 1 and res.content == ""
    assert "".join(s.text for s in res.spans) == res.text


def test_parallel_calls(pair: Nudger):
    """Several blocks may follow each other; every complete one is a valid call (random models may
    go on calling until the budget ends)."""
    res = pair.generate("Weather in Paris and Oslo?", gamma=0.5, tools=TOOLS, tool_choice="required", max_new_tokens=200)
    check_calls(res)
    assert res.text.startswith("<tool_call>\n")


def test_named_choice_and_single_call(pair: Nudger):
    res = pair.generate("Add 2 and 3.", gamma=0.5, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}}, parallel_tool_calls=False, max_new_tokens=200)
    check_calls(res, names=("add",))
    assert len(res.tool_calls) == 1
    res = pair.generate("Add 2 and 3.", gamma=0.5, tools=TOOLS, tool_choice="add", parallel_tool_calls=False, max_new_tokens=200)  # a bare name
    check_calls(res, names=("add",))


def test_auto_gives_text_or_calls(pair: Nudger):
    for gamma in (0.0, 0.5, 1.5):
        res = pair.generate("Say hello.", gamma=gamma, tools=TOOLS, tool_choice="auto", max_new_tokens=30)
        if res.tool_calls:
            check_calls(res)
        else:
            assert not res.text.startswith("<") and res.content == res.text


def test_unconstrained_keeps_prompts_and_parsing(pair: Nudger):
    on = pair.generate("Weather in Paris?", tools=TOOLS, tool_choice="required", max_new_tokens=20)
    off = pair.generate("Weather in Paris?", tools=TOOLS, tool_choice="required", max_new_tokens=20, constrained=False)
    assert on.prompts == off.prompts
    assert off.stats.mask_seconds == 0 and on.stats.mask_seconds > 0


def test_tools_reach_both_prompts_and_results_come_back(pair: Nudger):
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    res = pair.generate(msgs, tools=TOOLS, max_new_tokens=5)
    for side in ("base", "nudger"):
        p = res.prompts[side]
        assert '"name": "get_weather"' in p and "Current weather in a city." in p and '"name": "add"' in p
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in p
        assert "<tool_response>\n18 C, sunny\n</tool_response>" in p
    assert res.prompts["base"].endswith("Answer: ")


def test_native_template_tools(tokenizers):
    """A chat template that takes `tools=` gets them (and call arguments as dicts), no system text."""
    tok = copy.copy(tokenizers[1])
    tok.chat_template = (
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{{ m.role }}:{{ m.content }}{% for c in m.tool_calls or [] %}({{ c.function.arguments.city }}){% endfor %}|{% endfor %}"
    )
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}]
    assert chat_prompt(tok, msgs, BaseTemplate(), tuple(TOOLS), "auto") == "[get_weather][add]user:hi|assistant:(Oslo)|"


def test_parse_and_stream_helpers():
    text = 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>\n{"name": "nope", "arguments": {}}\n</tool_call>'
    content, calls = parse_tool_calls(text, tuple(TOOLS))
    assert [c["function"]["name"] for c in calls] == ["add"] and json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert content.startswith("Sure.")
    assert parse_tool_calls("plain text", tuple(TOOLS)) == ("plain text", [])
    assert could_be_call("") and could_be_call("<tool") and could_be_call("<tool_call>\n{") and not could_be_call("Hello")


def test_bad_tools_fail_up_front(pair: Nudger):
    with pytest.raises(ConfigError, match="tool_choice"):
        pair.generate("hi", tools=TOOLS, tool_choice="multiply")
    with pytest.raises(ConfigError, match="unique"):
        pair.generate("hi", tools=[WEATHER, WEATHER])
    with pytest.raises(ConfigError, match="function"):
        pair.generate("hi", tools=["get_weather"])
