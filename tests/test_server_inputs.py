"""Chat inputs of a valid JSON type that the engine cannot use get a 400 naming the field, never a
500: a table over the fields of an assistant turn's tool calls (the OpenAI schema types them
loosely, as dicts, so pydantic lets them through to the engine)."""

from __future__ import annotations

import httpx
import pytest
from nudging import Nudger, NudgingConfig
from nudging.serving import create_app, serve_in_thread
from tiny_models import tiny_pair

USER = {"role": "user", "content": "Weather?"}


def turn(call) -> list[dict]:
    return [USER, {"role": "assistant", "content": None, "tool_calls": [call]}, {"role": "tool", "content": "sunny"}, USER]


def fn(**function) -> dict:
    return {"id": "c1", "type": "function", "function": function}


@pytest.fixture(scope="module")
def url():
    nudger = Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.1, draft_tokens=4, max_new_tokens=2))
    with serve_in_thread(create_app(nudger, model_name="m")) as base_url:
        yield base_url


@pytest.mark.parametrize(
    "messages,fragment",
    [
        (turn(fn(name="f", arguments="{bad")), "tool_calls[0].function.arguments is not valid JSON"),
        (turn(fn(arguments="{}")), "tool_calls[0].function.name must be a non-empty string"),
        (turn(fn(name=3, arguments="{}")), "function.name must be a non-empty string"),
        (turn(fn(name="", arguments="{}")), "function.name must be a non-empty string"),
        (turn(fn(name="f", arguments="[1, 2]")), "function.arguments must be a JSON object"),
        (turn(fn(name="f", arguments=7)), "function.arguments must be a JSON object"),
        (turn({"id": "c1", "type": "function", "function": "f"}), "tool_calls[0] must be"),
    ],
)
def test_bad_tool_call_fields_are_a_400_naming_the_field(url, messages, fragment):
    r = httpx.post(url + "/chat/completions", json={"messages": messages, "max_tokens": 2}, timeout=120)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert fragment in error["message"] and "message 1" in error["message"]
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("arguments", ['{"city": "Paris"}', {"city": "Paris"}, "", None])
def test_good_tool_call_forms_are_served(url, arguments):
    call = fn(name="get_weather", arguments=arguments) if arguments is not None else fn(name="get_weather")
    r = httpx.post(url + "/chat/completions", json={"messages": turn(call), "max_tokens": 2}, timeout=120)
    assert r.status_code == 200, r.text
