"""How tools are described to each model (tools.py, prompts.py): the example call is a real tool's
with its real argument names, never a placeholder; the base's prompt is a document with a worked
question -> call turn before the question, not instructions it would copy."""

from __future__ import annotations

import json
import re

import pytest

from nudging.config import BaseTemplate
from nudging.prompts import chat_prompt, plain_prompt, to_messages
from nudging.tools import check_tools, example_call, render_calls

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}},
    "required": ["city", "unit"]}}}
TRIANGLE = {"type": "function", "function": {"name": "triangle_area", "description": "Area of a triangle given its base and height.", "parameters": {
    "type": "object", "properties": {"base": {"type": "number"}, "height": {"type": "number"}, "unit": {"type": "string", "default": "cm"}, "exact": {"type": "boolean"}}}}}
TOOLS = check_tools([WEATHER, TRIANGLE])
PLACEHOLDER = re.compile(r"\{\.\.\.\}|\.\.\.|<[a-z_]+>")


def _calls_in(text: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text)]


def test_the_example_is_a_real_call_with_the_schemas_own_values():
    assert example_call(TOOLS[0]) == {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}  # required only: e.g. and enum
    assert example_call(TOOLS[1]) == {"name": "triangle_area", "arguments": {"base": 0, "height": 0, "unit": "cm", "exact": False}}  # none required: all


def test_prompts_show_no_placeholder_and_a_call_of_a_real_tool(tokenizers):
    msgs = to_messages("Weather in Oslo, in celsius?")
    for choice in ("auto", "required", {"type": "function", "function": {"name": "triangle_area"}}):
        for text in (plain_prompt(msgs, BaseTemplate(), TOOLS, choice), chat_prompt(tokenizers[1], msgs, BaseTemplate(), TOOLS, choice)):
            assert not PLACEHOLDER.search(text.replace("<tool_call>", "").replace("</tool_call>", "").replace("<tools>", "").replace("</tools>", "")), text
            (call,) = _calls_in(text)
            wanted = "triangle_area" if isinstance(choice, dict) else "get_weather"
            assert call == example_call(next(t for t in TOOLS if t["function"]["name"] == wanted))


def test_the_base_reads_a_worked_turn_not_instructions():
    text = plain_prompt(to_messages("Weather in Oslo, in celsius?", "Be brief."), BaseTemplate(), TOOLS, "auto")
    call = render_calls([example_call(TOOLS[0])])
    assert text.startswith("Be brief.\n\n") and '"name": "triangle_area"' in text
    assert text.endswith(f"Question: Current weather in a city.\nAnswer: {call}\nQuestion: Weather in Oslo, in celsius?\nAnswer: ")
    assert "If no tool is needed" not in text and "answer with one" not in text  # no rule for the base to copy


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_tool_opener_picks_who_writes_the_first_word(pair):
    """tool_opener decides who makes the call-or-text decision under "auto" (nudged runs only)."""
    ask = dict(tools=list(TOOLS), tool_choice="auto", max_new_tokens=6)
    for opener in ("nudger", "base"):
        res = pair.generate("Weather in Oslo?", gamma=0.5, tool_opener=opener, **ask)
        assert res.spans[0].source == opener, res.spans
    for gamma, source in ((0.0, "base"), (1.5, "nudger")):  # one writer stays the only writer
        for opener in ("nudger", "base"):
            res = pair.generate("Weather in Oslo?", gamma=gamma, tool_opener=opener, **ask)
            assert {s.source for s in res.spans} == {source}
    forced = pair.generate("Weather in Oslo?", gamma=0.5, tool_opener="base", tools=list(TOOLS), tool_choice="required", max_new_tokens=6)
    assert forced.text == pair.generate("Weather in Oslo?", gamma=0.5, tools=list(TOOLS), tool_choice="required", max_new_tokens=6).text  # "auto" only


def test_a_bad_tool_opener_is_named():
    from nudging import NudgingConfig
    from nudging.errors import ConfigError

    with pytest.raises(ConfigError, match="tool_opener"):
        NudgingConfig(tool_opener="whoever")


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_call_threshold_decides_calls_or_text_once_by_the_nudgers_probability(pair):
    """Under "auto", the nudger's probability of opening a call, against call_threshold: at or above
    it the answer is a call (as under "required"), below it text that never opens one; the same
    probability whoever writes the first word, reported in the stats."""
    ask = dict(tools=list(TOOLS), tool_choice="auto", parallel_tool_calls=False, max_new_tokens=40)
    probe = pair.generate("Weather in Oslo?", gamma=0.5, call_threshold=0.0, **ask)
    p = probe.stats.call_probability
    assert 0 < p < 1
    for gamma in (0.5, 1.5):
        calls = pair.generate("Weather in Oslo?", gamma=gamma, call_threshold=p, **ask)
        text = pair.generate("Weather in Oslo?", gamma=gamma, call_threshold=min(1.0, p * 1.001), **ask)
        assert calls.stats.call_probability == text.stats.call_probability == p
        assert calls.text.startswith("<tool_call>") and (calls.tool_calls or calls.stats.stop_reason == "length")
        assert "<tool_call" not in text.text and not text.tool_calls
    assert pair.generate("Weather in Oslo?", gamma=0.0, call_threshold=0.0, **ask).stats.call_probability is None  # base only: no nudger
    assert pair.generate("Weather in Oslo?", gamma=0.5, call_threshold=0.0, tools=list(TOOLS), tool_choice="required", max_new_tokens=4).stats.call_probability is None


def test_a_bad_call_threshold_is_named():
    from nudging import NudgingConfig
    from nudging.errors import ConfigError

    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ConfigError, match="call_threshold"):
            NudgingConfig(call_threshold=bad)


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_call_gamma_writes_the_calls_by_its_own_rule(pair):
    """call_gamma replaces gamma where the answer is calls: forced ("required"), or decided under
    "auto"; text keeps gamma, and a base-only run stays the base's."""
    from nudging import NudgingConfig
    from nudging.errors import ConfigError

    ask = dict(tools=list(TOOLS), parallel_tool_calls=False, max_new_tokens=24)
    for call_gamma, source in ((2.0, "nudger"), (0.0, "base")):
        forced = pair.generate("Weather in Oslo?", gamma=0.5, call_gamma=call_gamma, tool_choice="required", **ask)
        decided = pair.generate("Weather in Oslo?", gamma=0.5, call_gamma=call_gamma, tool_choice="auto", call_threshold=0.0, **ask)
        for res in (forced, decided):
            assert res.text.startswith("<tool_call>") and {s.source for s in res.spans} == {source}, res.spans
    text = pair.generate("Weather in Oslo?", gamma=0.5, call_gamma=2.0, tool_choice="auto", call_threshold=1.0, **ask)
    assert text.text == pair.generate("Weather in Oslo?", gamma=0.5, tool_choice="auto", call_threshold=1.0, **ask).text
    base_only = pair.generate("Weather in Oslo?", gamma=0.0, call_gamma=2.0, tool_choice="required", **ask)
    assert {s.source for s in base_only.spans} == {"base"}
    with pytest.raises(ConfigError, match="call_gamma"):
        NudgingConfig(call_gamma=-1)
