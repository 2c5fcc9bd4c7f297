"""grounded_calls: under "auto" a decided call is written first and kept only where its argument
values come from the conversation and it repeats no earlier call (grounding.py, decoding/checking.py);
otherwise the answer is the text the decision would have written."""

from __future__ import annotations

import json

import pytest

from nudging import NudgingConfig
from nudging.grounding import unsupported
from nudging.tools import check_tools

TOOLS = check_tools([
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer", "default": 1}}}}},
    {"type": "function", "function": {"name": "convert", "parameters": {"type": "object", "properties": {
        "amount": {"type": "number"}, "rate": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}}, "exact": {"type": "boolean"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "spell", "parameters": {"type": "object", "properties": {"word": {"type": "string", "pattern": "^[a-z]{6,10}$"}}, "required": ["word"]}}},
])


def _call(name: str, **args) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_call_is_grounded_when_its_values_come_from_the_conversation():
    ask = _user("Weather in New York for the next 3 days? And convert 2,300 dollars at 17%.")
    assert unsupported(_call("get_weather", city="new york", unit="fahrenheit", days=3), TOOLS, ask) == []
    assert unsupported(_call("get_weather", city="York, New", days=1), TOOLS, ask) == []  # words in any order; the default says nothing
    assert unsupported(_call("convert", amount=2300, rate=0.17, tags=["dollars"], exact=True), TOOLS, ask) == []  # "2,300"; 17% as a fraction
    assert unsupported(_call("get_time"), TOOLS, ask) == []  # nothing to check
    assert unsupported(_call("convert", amount=0, rate=1.7e-1), TOOLS, ask) == []  # zero says nothing; 1.7e-1 is 17%


def test_a_call_whose_values_are_not_in_the_conversation_is_not_grounded():
    ask = _user("Tell me a joke about Paris.")
    assert unsupported(_call("get_weather", city=""), TOOLS, ask) == ['get_weather argument "" is not in the conversation']
    assert unsupported(_call("get_weather", city="London"), TOOLS, ask) == ['get_weather argument "London" is not in the conversation']
    assert unsupported(_call("convert", amount=12, tags=["paris", "rome"]), TOOLS, ask) == [
        "convert argument 12 is not in the conversation", 'convert argument "rome" is not in the conversation']
    assert unsupported(_call("get_weather", city="Paris", unit="kelvin"), TOOLS, ask)  # not an enum member: a value to check


def test_tool_results_ground_a_call_and_a_repeated_call_is_not_made_again():
    first = _call("get_weather", city="Oslo")
    convo = _user("Weather in Oslo?") + [
        {"role": "assistant", "content": "", "tool_calls": [first]},
        {"role": "tool", "content": "Oslo: 3 °C, snow. Tomorrow: Bergen", "tool_call_id": "c1"},
    ]
    assert unsupported(_call("get_weather", city="Oslo"), TOOLS, convo) == ['repeats the earlier call get_weather({"city": "Oslo"})']
    assert unsupported(_call("get_weather", city="Bergen"), TOOLS, convo) == []  # from the tool's result
    assert unsupported(_call("get_weather", city="Oslo", unit="celsius"), TOOLS, convo) == []  # other arguments: a new call


def test_the_calls_of_one_turn_spend_the_conversations_values_once():
    """An agent chaining calls on a result ("12 multiplied by 7": add(12, 7) -> 19, then multiply(19, 7))
    reuses the user's 7: not grounded. A value the conversation holds twice may be used twice."""
    convo = _user("What is 12 multiplied by 7?") + [
        {"role": "assistant", "content": "", "tool_calls": [_call("convert", amount=12, rate=7)]},
        {"role": "tool", "content": "19", "tool_call_id": "c1"},
    ]
    assert unsupported(_call("convert", amount=19, rate=7), TOOLS, convo) == ["convert argument 7 is in more arguments than the conversation holds it"]
    assert unsupported(_call("convert", amount=19), TOOLS, convo) == []
    assert unsupported(_call("convert", amount=5, rate=5), TOOLS, _user("What is 5 times 5?")) == []
    assert unsupported(_call("get_weather", city="New York", unit="New York"), TOOLS, _user("Weather in New York?")) == [
        'get_weather argument "New York" is in more arguments than the conversation holds it']
    later = convo + [{"role": "user", "content": "And 7 times 2?"}]  # a new user message: its values are fresh
    assert unsupported(_call("convert", amount=7, rate=2), TOOLS, later) == []


def test_grounded_calls_is_a_pair_setting_and_a_bad_value_is_named():
    from nudging.errors import ConfigError

    assert NudgingConfig().with_tool_settings(NudgingConfig(call_threshold=0.1, grounded_calls=True)).grounded_calls
    with pytest.raises(ConfigError, match="grounded_calls"):
        NudgingConfig(grounded_calls="yes")


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_an_ungrounded_call_becomes_the_text_answer(pair):
    """The tiny model's word for `spell` is not in the request: the answer is the one the text
    decision writes, streamed the same, with the call's cost and the reason in the stats."""
    ask = dict(tools=[t for t in TOOLS if t["function"]["name"] == "spell"], tool_choice="auto", parallel_tool_calls=False, max_new_tokens=64, gamma=0.5)
    call = pair.generate("Say a word.", **{**ask, "tool_choice": "required"})  # a decided call is written as under "required"
    assert call.tool_calls and call.stats.call_rejected is None
    text = pair.generate("Say a word.", call_threshold=1.0, **ask)
    decided_text = pair.generate("Say a word.", call_threshold=1.0, grounded_calls=True, **ask)  # text decided: nothing to check
    assert (decided_text.text, decided_text.stats.nudger_forwards, decided_text.stats.call_rejected) == (text.text, text.stats.nudger_forwards, None)
    checked = pair.generate("Say a word.", call_threshold=0.0, grounded_calls=True, **ask)
    assert checked.text == text.text and not checked.tool_calls and "<tool_call" not in checked.text
    assert checked.stats.call_rejected == unsupported(call.tool_calls[0], ask["tools"], _user("Say a word."))[0]
    assert checked.stats.call_probability == text.stats.call_probability
    assert checked.stats.nudger_forwards == 1 + call.stats.nudger_forwards + text.stats.nudger_forwards  # the decision, the call, the text
    stream = pair.stream("Say a word.", call_threshold=0.0, grounded_calls=True, **ask)
    assert "".join(ev.text for ev in stream) == text.text and stream.result.stats.call_rejected  # nothing of the call streamed
    single = [pair.generate(p, call_threshold=0.0, grounded_calls=True, **ask).text for p in ("Say a word.", "Another word?")]
    assert [r.text for r in pair.generate_batch(["Say a word.", "Another word?"], call_threshold=0.0, grounded_calls=True, **ask)] == single


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_a_grounded_call_is_kept_as_written(pair):
    """A call with nothing to check is grounded: released as "required" wrote it, stream included."""
    ask = dict(tools=[t for t in TOOLS if t["function"]["name"] == "get_time"], parallel_tool_calls=False, max_new_tokens=48, gamma=0.5)
    plain = pair.generate("What time is it?", tool_choice="required", **ask)
    stream = pair.stream("What time is it?", tool_choice="auto", call_threshold=0.0, grounded_calls=True, **ask)
    assert "".join(ev.text for ev in stream) == plain.text
    res = stream.result
    assert (res.text, res.tool_calls[0]["function"], res.stats.call_rejected, res.prompts) == (plain.text, plain.tool_calls[0]["function"], None, plain.prompts)
    assert 0 < res.stats.call_probability < 1
