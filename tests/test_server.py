"""The OpenAI-compatible server of a nudged pair, served by uvicorn on loopback and driven by the
official openai client (and raw httpx for bodies no client would send).

The tiny cross-family pair writes gibberish, but deterministically, and at gamma 0.4 both models
write: every greedy response must equal what `Nudger.generate` returns for the same request.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import httpx
import openai
import pytest
from nudging import Nudger, NudgingConfig, RawPrompt
from nudging.serving import create_app, serve_in_thread
from tiny_models import tiny_pair
from transformers import DynamicCache

MODEL = "tiny-nudging"
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]


@pytest.fixture(scope="module")
def nudger() -> Nudger:
    # short drafts keep requests cheap on two shared cores; at this gamma both models write
    return Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.1, draft_tokens=4, max_new_tokens=8))


@pytest.fixture(scope="module")
def url(nudger):
    with serve_in_thread(create_app(nudger, model_name=MODEL, max_queue=64)) as base_url:
        yield base_url


@pytest.fixture
def client(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def http(url):
    with httpx.Client(base_url=url.removesuffix("/v1"), timeout=120) as c:
        yield c


def spans_of(res) -> list[tuple[str, str]]:
    return [(s.text, s.source) for s in res.spans]


def merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive pieces from the same source joined: the spans a stream's chunks describe."""
    out: list[tuple[str, str]] = []
    for text, source in pieces:
        if out and out[-1][1] == source:
            out[-1] = (out[-1][0] + text, source)
        elif text:
            out.append((text, source))
    return out


def status(http: httpx.Client) -> dict:
    return http.get("/health").json()


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- the openai client against the server --------------------------------------------------------


def test_chat_completion_equals_engine(client, nudger):
    expected = nudger.generate(CHAT, max_new_tokens=8, temperature=0.0)
    assert {s for _, s in spans_of(expected)} == {"base", "nudger"}, "the tiny pair should have both models write"
    res = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0)
    choice = res.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == ("length" if expected.stats.stop_reason == "length" else "stop")
    assert (res.usage.prompt_tokens, res.usage.completion_tokens) == (expected.stats.prompt_tokens, expected.stats.output_tokens)
    assert res.usage.total_tokens == res.usage.prompt_tokens + res.usage.completion_tokens
    assert res.id.startswith("chatcmpl-") and res.object == "chat.completion" and res.model == MODEL
    extra = res.model_extra["nudging"]
    assert [(s["text"], s["source"]) for s in extra["spans"]] == spans_of(expected)
    assert extra["stats"]["nudge_share"] == expected.stats.nudge_share


def test_context_check_counts_prompt_tokens_like_the_engine(http, nudger):
    """The server refuses a prompt + max_tokens beyond the base's context before queueing, so it
    counts the base view's prompt ids itself: the count must be the engine's."""
    prompt_tokens = nudger.generate(CHAT, max_new_tokens=1).stats.prompt_tokens
    room = nudger.base.context_window - prompt_tokens
    r = http.post("/v1/chat/completions", json={"messages": CHAT, "max_tokens": room + 1})
    assert r.status_code == 400 and f"({prompt_tokens} in the prompt, {room + 1} for the completion)" in r.json()["error"]["message"]


def test_completion_with_stop_equals_engine(client, nudger):
    """/v1/completions continues the prompt text itself (a RawPrompt), not a chat question."""
    prompt = RawPrompt("Write a list of fruits.")
    full = nudger.generate(prompt, max_new_tokens=8)
    assert len(full.text) > 8
    stop = full.text[5:8]
    expected = nudger.generate(prompt, max_new_tokens=8, stop=[stop])
    assert expected.text == full.text[: full.text.find(stop)] and expected.stats.stop_reason == "stop"
    for stops in (stop, [stop, "never appears"]):
        res = client.completions.create(model=MODEL, prompt=prompt.text, max_tokens=8, stop=stops)
        assert res.choices[0].text == expected.text
        assert res.choices[0].finish_reason == "stop"
        assert res.usage.completion_tokens == expected.stats.output_tokens
        assert res.id.startswith("cmpl-") and res.object == "text_completion"


def test_default_max_tokens_and_length_finish(client, nudger):
    expected = nudger.generate(RawPrompt("Count to ten."))  # the server's defaults are the nudger's config
    res = client.completions.create(model=MODEL, prompt="Count to ten.")
    assert res.choices[0].text == expected.text
    assert res.choices[0].finish_reason == "length" and res.usage.completion_tokens == 8


def test_seeded_sampling_is_reproducible(client, nudger):
    args = dict(max_new_tokens=8, temperature=0.9, top_p=0.95, seed=7)
    expected = nudger.generate(CHAT, **args)
    texts = [
        client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0.9, top_p=0.95, seed=7).choices[0].message.content
        for _ in range(2)
    ]
    assert texts == [expected.text, expected.text]


def test_streaming_chat(client, nudger):
    expected = nudger.generate(CHAT, max_new_tokens=8)
    chunks = list(client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, stream=True, stream_options={"include_usage": True}))
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    pieces = [(c.choices[0].delta.content, c.model_extra["nudging"]["source"]) for c in with_choices if c.choices[0].delta.content]
    assert "".join(p for p, _ in pieces) == expected.text
    assert merged(pieces) == spans_of(expected)
    finals = [c for c in with_choices if c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0] is with_choices[-1]
    assert [(s["text"], s["source"]) for s in finals[0].model_extra["nudging"]["spans"]] == spans_of(expected)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.stats.output_tokens
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)


def test_streaming_completion_with_stop(client, nudger):
    prompt = RawPrompt("Describe the sea.")
    full = nudger.generate(prompt, max_new_tokens=8)
    stop = full.text[4:7]
    expected = nudger.generate(prompt, max_new_tokens=8, stop=[stop])
    chunks = list(client.completions.create(model=MODEL, prompt=prompt.text, max_tokens=8, stop=[stop], stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_server_config_sets_request_defaults(nudger):
    config = NudgingConfig(gamma=0.0, max_new_tokens=5, stop=("zz",))
    expected = nudger.generate(CHAT, config)
    with serve_in_thread(create_app(nudger, config=config, model_name=MODEL)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
        res = client.chat.completions.create(model=MODEL, messages=CHAT)
        assert res.choices[0].message.content == expected.text
        assert res.model_extra["nudging"]["stats"]["nudge_share"] == 0.0 and res.usage.completion_tokens <= 5


def test_models_and_health(client, http):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    health = status(http)
    assert health["status"] == "ok" and health["model"] == MODEL


@pytest.mark.parametrize(
    "kwargs, error, param, fragment",
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "model", "does not exist"),
        ({"n": 2}, openai.BadRequestError, "n", "n=2"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens", "at least 1"),
        ({"messages": []}, openai.BadRequestError, "messages", "non-empty"),
        ({"stream": True, "n": 2}, openai.BadRequestError, "n", "n=2"),
        ({"temperature": -0.5}, openai.BadRequestError, "temperature", "temperature"),
    ],
)
def test_errors_reach_the_openai_client(client, kwargs, error, param, fragment):
    args = {"model": MODEL, "messages": CHAT, "max_tokens": 4, **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**args)
    assert info.value.param == param and fragment in info.value.message


# -- bad inputs: right status and message, and the server keeps serving ---------------------------

_USER = [{"role": "user", "content": "hi"}]
BAD = [
    # (method, path, body: bytes or JSON, status, message fragment, param)
    ("POST", "/v1/chat/completions", b"{not json", 400, "not valid JSON", None),
    ("POST", "/v1/chat/completions", b"\xff\xfe{\x00}", 400, "not valid UTF-8", None),
    ("POST", "/v1/chat/completions", b"[1, 2]", 400, "must be a JSON object", None),
    ("POST", "/v1/chat/completions", {}, 422, "Field required", "messages"),
    ("POST", "/v1/chat/completions", {"messages": "hello"}, 422, "valid list", "messages"),
    ("POST", "/v1/chat/completions", {"messages": []}, 400, "non-empty list", "messages"),
    ("POST", "/v1/chat/completions", {"messages": [{"content": "hi"}]}, 422, "Field required", "messages.0.role"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, 422, "valid string or", "messages.0.content"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "unknown role 'wizard'", "messages"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "system", "content": "be nice"}]}, 400, "no non-empty user message", "messages"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "   "}]}, 400, "no non-empty user message", "messages"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "only text content", "messages.0.content"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "max_tokens": 0}, 400, "at least 1", "max_tokens"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "max_tokens": -5}, 400, "at least 1", "max_tokens"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "max_completion_tokens": 0}, 400, "at least 1", "max_tokens"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "max_tokens": 10**6}, 400, "maximum context length is 2048", "messages"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "max_tokens": "many"}, 422, "valid integer", "max_tokens"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "model": "gpt-4o"}, 404, "'gpt-4o' does not exist", "model"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "n": 3}, 400, "n=3", "n"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "top_p": 0}, 400, "top_p", "top_p"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "gamma": -1}, 400, "gamma", "gamma"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "stop": [""]}, 400, "stop", "stop"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "tools": [{"type": "function"}]}, 400, "tools must be", "tools"),  # malformed (tools are served: test_server_tools.py)
    # issue 19: values of a valid type that gave a 500 or were silently dropped or accepted
    ("POST", "/v1/chat/completions", {"messages": _USER, "temperature": 0.9, "seed": 2**64 - 1}, 400, "64-bit signed integer", "seed"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "temperature": 0.9, "seed": -(2**63) - 1}, 400, "64-bit signed integer", "seed"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "temperature": 1e308}, 400, "between 0 and 2", "temperature"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "temperature": 2.01}, 400, "between 0 and 2", "temperature"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "NaN is not a JSON number", None),
    ("POST", "/v1/completions", {"prompt": "hi", "response_format": {"type": "json_object"}}, 400, "response_format is not supported", "response_format"),
    ("POST", "/v1/completions", {"prompt": "hi", "tool_choice": "required"}, 400, "tool_choice is not supported", "tool_choice"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "presence_penalty": 0.5}, 400, "presence_penalty is not supported", "presence_penalty"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "frequency_penalty": -1}, 400, "frequency_penalty is not supported", "frequency_penalty"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "logit_bias": {"50256": -100}}, 400, "logit_bias is not supported", "logit_bias"),
    ("POST", "/v1/completions", {"prompt": "hi", "logit_bias": {"1": 5}}, 400, "logit_bias is not supported", "logit_bias"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4 strings", "stop"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "stop": ["x" * 8000] * 1000}, 400, "at most 4 strings", "stop"),
    ("POST", "/v1/chat/completions", {"messages": _USER, "stop": "x" * 8000}, 400, "limited to 128 characters", "stop"),
    ("POST", "/v1/chat/completions", ("text/plain", b'{"messages": [{"role": "user", "content": "hi"}]}'), 415, "must be application/json, got 'text/plain'", None),
    ("POST", "/v1/completions", ("application/x-www-form-urlencoded", b"prompt=hi"), 415, "must be application/json", None),
    ("POST", "/v1/completions", (None, b'{"prompt": "hi"}'), 415, "got 'none'", None),
    ("POST", "/v1/completions", {"prompt": ""}, 400, "prompt is empty", "prompt"),
    ("POST", "/v1/completions", {"prompt": 5}, 422, "valid string or", "prompt"),
    ("POST", "/v1/completions", {"prompt": [1, 2, 3]}, 400, "token ids", "prompt"),
    ("POST", "/v1/completions", {"prompt": "hi", "logprobs": 2}, 400, "logprobs", "logprobs"),
    ("POST", "/v1/completions", {"prompt": "word " * 5000}, 400, "maximum context length", "prompt"),
    ("POST", "/v1/completions", b'{"prompt": "' + b"a" * (9 * 1024 * 1024) + b'"}', 413, "larger than", None),
    ("GET", "/v1/nope", None, 404, "Invalid URL (GET /v1/nope)", None),
    ("GET", "/v1/completions", None, 405, "Method Not Allowed", None),
]


def _send(http: httpx.Client, method: str, path: str, body) -> httpx.Response:
    """bytes: sent as JSON; (content type or None, bytes): sent with that type; else JSON-encoded."""
    if isinstance(body, tuple):
        media, raw = body
        return http.request(method, path, content=raw, headers={"Content-Type": media} if media else {})
    if isinstance(body, bytes):
        return http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    return http.request(method, path, json=body)


@pytest.mark.parametrize("method, path, body, code, fragment, param", BAD, ids=[f"{i:02d}-{b[4]}" for i, b in enumerate(BAD)])
def test_bad_input(http, method, path, body, code, fragment, param):
    r = _send(http, method, path, body)
    assert r.status_code == code, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"] and error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert "Traceback" not in r.text
    assert status(http)["status"] == "ok"


def test_serves_after_all_bad_inputs(http, client, nudger):
    for method, path, body, code, _, _ in BAD:
        assert _send(http, method, path, body).status_code == code
    expected = nudger.generate(CHAT, max_new_tokens=8)
    assert client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8).choices[0].message.content == expected.text


# -- queueing and cancellation ------------------------------------------------------------------


def test_full_queue_gets_503_and_disconnect_cancels(nudger):
    """One long stream runs, one request waits, the next is refused; closing the stream cancels it."""
    long_request = {"prompt": "Tell a long story.", "max_tokens": 1500, "stream": True, "gamma": 0}
    with serve_in_thread(create_app(nudger, model_name=MODEL, max_queue=1, max_batch=1)) as url:
        root = url.removesuffix("/v1")
        with httpx.Client(base_url=root, timeout=120) as http:
            waiting: list[httpx.Response] = []
            with http.stream("POST", "/v1/completions", json=long_request) as running:
                assert running.status_code == 200
                lines = running.iter_lines()  # keep it: a discarded line iterator closes the connection
                assert next(lines).startswith("data: ")  # the generation is under way
                wait_for(lambda: status(http)["running"] == 1)

                def queued_request() -> None:
                    with httpx.Client(base_url=root, timeout=120) as other:
                        waiting.append(other.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 4}))

                thread = threading.Thread(target=queued_request)
                thread.start()
                wait_for(lambda: status(http)["queued"] == 1)
                refused = http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 4})
                assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
                assert refused.json()["error"]["code"] == "server_busy"
                started = time.monotonic()
            # leaving the block closed the stream mid-generation: the engine stops at its next step
            thread.join(60)
            assert waiting[0].status_code == 200 and waiting[0].json()["choices"][0]["text"] == nudger.generate(RawPrompt("Hi"), max_new_tokens=4).text
            wait_for(lambda: status(http)["running"] == 0)
            assert time.monotonic() - started < 30
            counts = status(http)
            assert counts["cancelled"] == 1 and counts["served"] == 1 and counts["queued"] == 0


def test_non_streaming_disconnect_cancels(url, http):
    before = status(http)["cancelled"]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/completions", json={"prompt": "Tell a long story.", "max_tokens": 1500, "gamma": 0}, timeout=httpx.Timeout(120, read=1.0))
    wait_for(lambda: status(http)["cancelled"] == before + 1 and status(http)["running"] == 0)


def test_load_32_streams_a_quarter_disconnecting(url, http, nudger):
    prompts = [f"Question {i}: what is {i} plus {i}?" for i in range(6)]
    expected = {p: nudger.generate(RawPrompt(p), max_new_tokens=8).text for p in prompts}
    before = status(http)
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)

    async def complete(prompt: str) -> str:
        stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, stream=True)
        return "".join([c.choices[0].text async for c in stream])

    async def leave_early(i: int) -> str:
        stream = await client.completions.create(model=MODEL, prompt=f"Story {i}", max_tokens=1500, stream=True, extra_body={"gamma": 0})
        async with stream:
            async for chunk in stream:
                if chunk.choices[0].text:
                    return chunk.choices[0].text  # closing the stream here disconnects mid-generation
        raise AssertionError("the stream ended before any text")

    async def main() -> list[str]:
        jobs = [leave_early(i) if i % 4 == 3 else complete(prompts[i % len(prompts)]) for i in range(32)]
        try:
            return await asyncio.wait_for(asyncio.gather(*jobs), timeout=300)
        finally:
            await client.close()

    results = asyncio.run(main())
    for i, text in enumerate(results):
        if i % 4 != 3:
            assert text == expected[prompts[i % len(prompts)]], f"client {i}"
    wait_for(lambda: status(http)["running"] == 0 and status(http)["queued"] == 0)
    after = status(http)
    assert after["cancelled"] - before["cancelled"] == 8
    assert after["served"] - before["served"] == 24 and after["failed"] == before["failed"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_memory_stays_flat_across_500_requests(url, http):
    """Every generation, finished or cancelled by a disconnect, frees its KV caches; memory stays flat.

    (A tiny model's caches are too small to show in RSS, so live caches are counted directly.)"""
    body = {"model": MODEL, "gamma": 0}

    def burst(n: int) -> None:
        for i in range(n):
            if i % 10 == 0:  # disconnect mid-stream
                with http.stream("POST", "/v1/completions", json={**body, "prompt": f"q{i}", "max_tokens": 64, "stream": True}) as r:
                    lines = r.iter_lines()
                    assert next(lines).startswith("data: ")
            elif i % 10 == 5:
                with http.stream("POST", "/v1/chat/completions", json={**body, "max_tokens": 2, "stream": True, "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status_code == 200 and r.read().endswith(b"data: [DONE]\n\n")
            else:
                r = http.post("/v1/completions", json={**body, "prompt": f"q{i}", "max_tokens": 2})
                assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1

    burst(100)  # warm up allocator pools and caches
    wait_for(lambda: status(http)["running"] == 0)
    threads, rss, before = threading.active_count(), _rss_bytes(), status(http)
    burst(400)
    wait_for(lambda: status(http)["running"] == 0)
    growth = _rss_bytes() - rss
    assert status(http)["cancelled"] - before["cancelled"] == 40
    assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 400 requests"
    assert threading.active_count() <= threads + 1
    gc.collect()
    assert not [o for o in gc.get_objects() if issubclass(type(o), DynamicCache)], "a generation kept its KV cache"


def test_example_client_runs_against_the_server(url, nudger, capsys):
    import runpy

    example = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "examples" / "server_client.py"))
    example["main"](["--base-url", url, "--model", MODEL, "--max-tokens", "8"])
    expected = nudger.generate([{"role": "user", "content": example["QUESTION"]}], max_new_tokens=8).text
    out = capsys.readouterr().out
    assert out.startswith(expected + "\n") and "nudge share" in out


@pytest.mark.real
def test_real_pair_chat_and_stream(real_pair):
    nudger = Nudger(*real_pair)
    messages = [{"role": "user", "content": "Give one tip for sleeping well."}]
    expected = nudger.generate(messages, max_new_tokens=24)
    with serve_in_thread(create_app(nudger)) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)
        res = client.chat.completions.create(model="nudging", messages=messages, max_tokens=24)
        assert res.choices[0].message.content == expected.text
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(model="nudging", messages=messages, max_tokens=24, stream=True) if c.choices)
        assert streamed == expected.text


def test_concurrent_requests_decode_together(nudger):
    """Continuous batching: requests arriving while others run join the batch; each gets its solo answer."""
    prompts = [f"Name {i} animals." for i in range(6)]
    expected = [nudger.generate(RawPrompt(p), max_new_tokens=12).text for p in prompts]
    seen = []
    real = type(nudger.base).forward_batch

    def counting(self, sessions, ids, keeps):
        seen.append(len(sessions))
        return real(self, sessions, ids, keeps)

    with serve_in_thread(create_app(nudger, model_name=MODEL, max_batch=4)) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)

        async def main() -> list[str]:
            async def one(p: str) -> str:
                return (await client.completions.create(model=MODEL, prompt=p, max_tokens=12)).choices[0].text

            try:
                return await asyncio.gather(*(one(p) for p in prompts))
            finally:
                await client.close()

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(nudger.base), "forward_batch", counting)
            texts = asyncio.run(main())
    assert texts == expected
    assert 1 < max(seen) <= 4
