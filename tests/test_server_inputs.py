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


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def test_schema_size_and_depth_are_bounded_with_a_400(url):
    from nudging.serving.grammars import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH

    big = schema_format({"enum": [f"value number {i}" for i in range(MAX_SCHEMA_BYTES // 16)]})
    deep: dict = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH):
        deep = {"type": "array", "items": deep}
    for fmt, fragment in ((big, "bytes as JSON"), (schema_format(deep), "nests deeper")):
        r = httpx.post(url + "/chat/completions", json={"messages": [USER], "max_tokens": 2, "response_format": fmt}, timeout=120)
        assert r.status_code == 400, r.text
        assert fragment in r.json()["error"]["message"] and r.json()["error"]["param"] == "response_format"


def test_tokenizer_views_for_grammars_are_built_off_the_engine_thread(url, monkeypatch):
    """llguidance's view of a tokenizer takes seconds for a large vocabulary: built while the
    request is checked, not on the thread that serves every running stream."""
    import threading
    import weakref

    import llguidance.hf
    from nudging.decoding import grammar

    monkeypatch.setattr(grammar, "_TOKENIZERS", weakref.WeakKeyDictionary())
    built, real = [], llguidance.hf.from_tokenizer
    monkeypatch.setattr(llguidance.hf, "from_tokenizer", lambda *a, **k: (built.append(threading.current_thread().name), real(*a, **k))[1])
    fmt = schema_format({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    r = httpx.post(url + "/chat/completions", json={"messages": [USER], "max_tokens": 4, "response_format": fmt}, timeout=120)
    assert r.status_code == 200, r.text
    assert len(built) == 2 and "nudging-engine" not in built, built


def test_a_deeply_nested_body_is_a_400(url):
    body = '{"messages": [{"role": "user", "content": "hi"}], "response_format": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = httpx.post(url + "/chat/completions", content=body, headers={"Content-Type": "application/json"}, timeout=120)
    assert r.status_code == 400 and "nests too deeply" in r.json()["error"]["message"], r.text
