"""Tool calls in the engine: descriptions in both prompts, calls forced by the grammar and parsed
into OpenAI's form, tool_choice, parallel calls, tool results rendered back."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from nudging import Nudger
from nudging.errors import ConfigError
from nudging.config import BaseTemplate
from nudging.decoding.grammar import Matcher, tool_grammar
from nudging.prompts import chat_prompt
from nudging.tools import CallFilter, check_tools, parse_tool_calls

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
        assert "<tool_call>" not in res.content
        if res.tool_calls:
            check_calls(res)
        elif "<tool_call>" not in res.text:
            assert res.content == res.text


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
    content, calls, invalid = parse_tool_calls(text, tuple(TOOLS))
    assert [c["function"]["name"] for c in calls] == ["add"] and json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert content == "Sure." and [c["function"]["name"] for c in invalid] == ["nope"] and "not one of the given tools" in invalid[0]["error"]
    assert parse_tool_calls("plain text", tuple(TOOLS)) == ("plain text", [], [])


def test_calls_are_validated_against_their_schema():
    """A call that misses a required argument is reported as invalid, never returned as a call
    (main parsed it: get_weather without its `city`)."""
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"town": 5}}\n</tool_call>'
    content, calls, invalid = parse_tool_calls(text, tuple(TOOLS))
    assert calls == [] and content == "Let me check."
    (bad,) = invalid
    assert bad["function"] == {"name": "get_weather", "arguments": '{"town": 5}'} and "'city' is a required property" in bad["error"]
    content, calls, invalid = parse_tool_calls(text[:-30], tuple(TOOLS))  # cut inside the call
    assert calls == [] and content == "Let me check." and "ended inside" in invalid[0]["error"]


AUTO = [
    ("Hello there, no tool needed.", True),
    ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', True),
    ('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 3, "b": 4}}\n</tool_call>', True),
    ("a <tool_cal, a < tool_call>", True),
    ("a <tool_callx, a <tool_call", False),  # the opener's start with anything else after it
    ('\n<tool_call name="add">\n{"a": 1}', False),  # a call's look-alike, seen as free text on BFCL
    ('The result is 45.\n\nThe code is:\n<tool_call>\n{"name": "add", "arguments": {...}}\n</tool_call>', False),
    ('10 units\n<tool_call>\n{"name": "get_weather", "arguments": {"town": 5}}\n</tool_call>', False),
    ("Say <tool_call> once", False),
]


@pytest.mark.parametrize(("text", "ok"), AUTO)
def test_auto_never_leaks_a_call(tokenizers, text, ok):
    """Under "auto" the answer is text without the opener, then calls: once `<tool_call>` is written
    the grammar constrains the call (main let any text that did not start with "<" write free calls)."""
    for tok in tokenizers:
        m = Matcher(tool_grammar(TOOLS, "auto", True), tok, frozenset({tok.eos_token_id}))
        ids = tok.encode(text, add_special_tokens=False)
        whole = m.valid_prefix(ids) == len(ids)
        if whole:
            m.consume(ids)
        assert (whole and m.accepting) == ok


def test_stream_splits_as_the_whole_answer():
    """Streamed content and calls add up to what the whole answer parses into, whatever the deltas."""
    tools = tuple(TOOLS)
    for text in [a for a, _ in AUTO] + ["Hi.\n\n", 'Ok <tool_cal\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 23}}\n</tool_call>']:
        content, calls, _ = parse_tool_calls(text, tools)
        for step in (1, 3, 7):
            for live in (True, False):
                split = CallFilter(True, tools, live=live)
                shown, args = "", {}
                outs = [split.feed(text[i : i + step]) for i in range(0, len(text), step)]
                outs.append(split.finish(type("R", (), {"content": content})()))
                for piece_text, pieces in outs:
                    shown += piece_text
                    for p in pieces:
                        args[p["index"]] = args.get(p["index"], "") + p["arguments"]
                assert shown == content, (text, step)
                valid = [c["function"]["arguments"] for c in calls]
                assert (list(args.values())[: len(valid)] if live else list(args.values())) == valid


def test_none_means_no_tool_prompt_and_no_parsing(pair: Nudger):
    """tool_choice "none": neither prompt describes the tools, nothing is parsed (an agent forcing a
    final answer gets text back)."""
    res = pair.generate("Weather in Paris?", tools=TOOLS, tool_choice="none", max_new_tokens=5)
    assert not any("get_weather" in p or "<tool_call>" in p for p in res.prompts.values())
    assert res.tool_calls == [] and res.content == res.text and res.stats.mask_seconds == 0


def test_nested_defs_compile_and_validate(pair: Nudger):
    """What the openai SDK's `pydantic_function_tool` sends: `$defs` with `$ref`s, which must still
    resolve once the parameters sit inside the call schema (main: "Pointer '/$defs/Addr' does not exist")."""
    from openai import pydantic_function_tool
    from pydantic import BaseModel, Field

    class Addr(BaseModel):
        city: str = Field(max_length=6)

    class Person(BaseModel):
        home: Addr
        work: Addr | None = None

    tools = [pydantic_function_tool(Person), ADD]
    res = pair.generate("Where?", gamma=0.5, tools=tools, tool_choice="required", parallel_tool_calls=False, max_new_tokens=60)
    for c in res.tool_calls:
        assert check_tools(tools) and c["function"]["name"] in ("Person", "add")
        if c["function"]["name"] == "Person":
            Person.model_validate_json(c["function"]["arguments"])


def test_all_of_branches_compile(pair: Nudger):
    """allOf object branches: each closed on its own was unsatisfiable; their union is closed instead."""
    both = {"type": "object", "allOf": [{"properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]}
    tool = {"type": "function", "function": {"name": "f", "parameters": both}}
    res = pair.generate("Call f.", gamma=0.5, tools=[tool], tool_choice="required", parallel_tool_calls=False, max_new_tokens=60)
    assert res.stats.stop_reason == "eos"
    (call,) = res.tool_calls
    args = json.loads(call["function"]["arguments"])
    jsonschema.validate(args, both)
    assert set(args) == {"a", "b"}


def test_bad_tools_fail_up_front(pair: Nudger):
    with pytest.raises(ConfigError, match="tool_choice"):
        pair.generate("hi", tools=TOOLS, tool_choice="multiply")
    with pytest.raises(ConfigError, match="unique"):
        pair.generate("hi", tools=[WEATHER, WEATHER])
    with pytest.raises(ConfigError, match="function"):
        pair.generate("hi", tools=["get_weather"])
