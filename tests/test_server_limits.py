"""The server's door and limits: API key, CORS, request ids, /metrics, the --max-tokens cap, the
per-request deadline, the nudger's window checked before queueing, and the exposure warning.

(The bad-input table of plain request bodies is in test_server.py; these need an app of their own.)
"""

from __future__ import annotations

import logging
import time

import httpx
import openai
import pytest
from nudging import Nudger, NudgingConfig, RawPrompt
from nudging.serving import create_app, serve_in_thread
from nudging.serving.app import Limits
from nudging.serving.guard import is_loopback, warn_if_exposed
from prometheus_client.parser import text_string_to_metric_families
from tiny_models import tiny_pair

MODEL = "tiny-nudging"
USER = [{"role": "user", "content": "Name a color."}]
LONG = {"prompt": "Tell a long story.", "max_tokens": 1500, "gamma": 0}


@pytest.fixture(scope="module")
def nudger() -> Nudger:
    return Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.1, draft_tokens=4, max_new_tokens=8))


def serve(nudger: Nudger, **kwargs):
    return serve_in_thread(create_app(nudger, model_name=MODEL, **kwargs))


def root(url: str) -> str:
    return url.removesuffix("/v1")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_api_key_guards_every_route_but_health_and_the_page(nudger):
    with serve(nudger, api_key="sekret") as url, httpx.Client(base_url=root(url), timeout=120) as http:
        for method, path in [("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/nope")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
                r = http.request(method, path, headers=headers, json={"messages": USER})
                assert r.status_code == 401, (method, path, headers)
                assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
        assert http.get("/health").status_code == 200 and http.get("/").status_code == 200
        assert http.get("/metrics", headers={"Authorization": "Bearer sekret"}).status_code == 200
        good = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0, timeout=120)
        assert good.chat.completions.create(model=MODEL, messages=USER, max_tokens=4).choices[0].message.content == nudger.generate(USER, max_new_tokens=4).text
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="nope", max_retries=0).models.list()


def test_cors_only_for_allowed_origins(nudger):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,authorization"}
    with serve(nudger, allowed_origins=["https://ok.example"], api_key="k") as url, httpx.Client(base_url=root(url), timeout=120) as http:
        ok = http.options("/v1/chat/completions", headers={"Origin": "https://ok.example", **preflight})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ok.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        evil = http.options("/v1/chat/completions", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
        r = http.get("/v1/models", headers={"Origin": "https://ok.example", "Authorization": "Bearer k"})
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
    with serve(nudger) as url:  # no origins: no CORS headers at all
        r = httpx.get(f"{url}/models", headers={"Origin": "https://ok.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_request_ids_in_responses_and_log(nudger, caplog):
    with serve(nudger) as url, httpx.Client(base_url=root(url), timeout=120) as http, caplog.at_level(logging.INFO, logger="nudging.server"):
        mine = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}, headers={"x-request-id": "client-id-42"})
        assert mine.headers["x-request-id"] == "client-id-42"
        fresh = http.post("/v1/completions", json={"prompt": ""})
        made = fresh.headers["x-request-id"]
        assert fresh.status_code == 400 and len(made) == 32
        odd = http.get("/health", headers={"x-request-id": "bad id\twith spaces"})
        assert odd.headers["x-request-id"] != "bad id\twith spaces"
    lines = [r.getMessage() for r in caplog.records if r.name == "nudging.server"]
    assert any(line.startswith("client-id-42 POST /v1/completions 200") for line in lines)
    assert any(line.startswith(f"{made} POST /v1/completions 400") for line in lines)


def test_metrics_count_requests_tokens_and_latencies(nudger):
    with serve(nudger) as url, httpx.Client(base_url=root(url), timeout=120) as http:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
        used = [client.chat.completions.create(model=MODEL, messages=USER, max_tokens=8).usage for _ in range(2)]
        chunks = list(client.completions.create(model=MODEL, prompt="Count.", max_tokens=8, stream=True, stream_options={"include_usage": True}))
        used.append(chunks[-1].usage)
        assert http.post("/v1/chat/completions", json={"messages": []}).status_code == 400
        r = http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        m = samples(r.text)
    assert m[("nudging_requests_total", (("path", "/v1/chat/completions"), ("status", "200")))] == 2
    assert m[("nudging_requests_total", (("path", "/v1/completions"), ("status", "200")))] == 1
    assert m[("nudging_requests_total", (("path", "/v1/chat/completions"), ("status", "400")))] == 1
    assert m[("nudging_queue_depth", ())] == 0 and m[("nudging_running_rows", ())] == 0
    assert m[("nudging_jobs_total", (("outcome", "served"),))] == 3
    out = m[("nudging_output_tokens_total", (("source", "base"),))] + m[("nudging_output_tokens_total", (("source", "nudger"),))]
    assert out == sum(u.completion_tokens for u in used)
    assert m[("nudging_prompt_tokens_total", ())] == sum(u.prompt_tokens for u in used)
    assert m[("nudging_time_to_first_token_seconds_count", ())] == 3 and m[("nudging_time_to_first_token_seconds_sum", ())] > 0
    assert m[("nudging_inter_token_latency_seconds_count", ())] == 3
    assert m[("nudging_nudge_share_count", ())] == 3


def test_max_tokens_cap(nudger):
    with serve(nudger, limits=Limits(max_tokens=4)) as url, httpx.Client(base_url=root(url), timeout=120) as http:
        r = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 5})
        assert r.status_code == 400 and r.json()["error"] == {"message": "max_tokens is limited to 4 on this server (--max-tokens), got 5", "type": "invalid_request_error", "param": "max_tokens", "code": "invalid_value"}
        capped = http.post("/v1/completions", json={"prompt": "Count to ten."}).json()  # the default (8) is capped too
        assert capped["usage"]["completion_tokens"] == 4 and capped["choices"][0]["finish_reason"] == "length"
        assert capped["choices"][0]["text"] == nudger.generate(RawPrompt("Count to ten."), max_new_tokens=4).text


def test_deadline_cancels_and_answers_504(nudger):
    with serve(nudger, limits=Limits(timeout=0.5)) as url, httpx.Client(base_url=root(url), timeout=120) as http:
        r = http.post("/v1/completions", json=LONG)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout" and "limit of 0.5 seconds" in r.json()["error"]["message"]
        with http.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as s:
            events = [line for line in s.iter_lines() if line]
        assert '"code": "timeout"' in events[-2] and events[-1] == "data: [DONE]"
        for _ in range(600):
            health = http.get("/health").json()
            if health["running"] == 0:
                break
            time.sleep(0.05)
        assert health["running"] == 0 and health["cancelled"] == 2
        assert http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}).status_code == 200


def test_prompt_beyond_the_nudgers_window_is_refused_before_queueing():
    small = Nudger(*tiny_pair("cross"), config=NudgingConfig(gamma=0.1, draft_tokens=4, max_new_tokens=8))
    small.nudger.context_window = 64  # the base keeps its 2048
    with serve(small) as url, httpx.Client(base_url=root(url), timeout=120) as http:
        r = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "word " * 100}], "max_tokens": 4})
        error = r.json()["error"]
        assert r.status_code == 400 and error["param"] == "messages" and error["code"] == "context_length_exceeded"
        assert "for the nudger, whose maximum context length is 64 tokens" in error["message"]
        assert http.get("/health").json()["failed"] == 0


def test_tiny_temperature_is_not_a_server_error(nudger):
    """Issue 19's temperature 1e-37: a valid type, so an answer or a 400, never a 500."""
    with serve(nudger) as url:
        r = httpx.post(f"{url}/chat/completions", json={"messages": USER, "temperature": 1e-37, "seed": 3, "max_tokens": 4}, timeout=120)
        assert r.status_code in (200, 400), r.text


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("myhost", False)])
def test_warning_when_listening_beyond_loopback_without_a_key(host, loopback, caplog):
    assert is_loopback(host) is loopback
    with caplog.at_level(logging.WARNING, logger="nudging.server"):
        warn_if_exposed(host, None)
        warn_if_exposed(host, "a key")
    assert len(caplog.records) == (0 if loopback else 1)
    if not loopback:
        assert "WITHOUT an API key" in caplog.records[0].getMessage() and "--api-key" in caplog.records[0].getMessage()


def test_deadline_counts_from_arrival(nudger):
    """The deadline starts when the request arrives, not once its body is read and validated: a
    body trickling in past it gets 504 without being queued."""
    import json

    def slow_body():
        body = json.dumps({"prompt": "hi", "max_tokens": 2}).encode()
        for i in range(0, len(body), 8):
            time.sleep(0.4)
            yield body[i : i + 8]

    with serve(nudger, limits=Limits(timeout=1.0)) as url, httpx.Client(base_url=root(url), timeout=120) as http:
        r = http.post("/v1/completions", content=slow_body(), headers={"Content-Type": "application/json"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout", r.text
        assert http.get("/health").json()["served"] == 0
        assert http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2}).status_code == 200
