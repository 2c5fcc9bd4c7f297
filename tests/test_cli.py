"""The `nudging` CLI and the provenance renderers, on a tiny cross-family pair (no real model loads)."""

from __future__ import annotations

import json

import pytest
from nudging import Nudger, Span, cli
from nudging.render import summary, to_html, to_text
from tiny_models import tiny_pair
from typer.testing import CliRunner

runner = CliRunner()
OPTS = ["--gamma", "0.5", "--max-new-tokens", "12"]


@pytest.fixture(scope="module")
def tiny() -> Nudger:
    return Nudger(*tiny_pair("cross"))


@pytest.fixture
def loads(monkeypatch, tiny):
    """Replace model loading with the tiny pair; records the (base, nudger, device) asked for."""
    calls = []

    def fake(base, nudger, device, compile=None, dtype="auto", *, base_tokenizer=None, nudger_tokenizer=None):
        calls.append((base, nudger, device) + ((compile,) if compile is not None else ()) + ((dtype,) if dtype != "auto" else ()))
        if base_tokenizer or nudger_tokenizer:
            calls.append(("tokenizers", base_tokenizer, nudger_tokenizer))
        return tiny

    monkeypatch.setattr(cli.common, "load_nudger", fake)
    return calls


def run(*args, input=None):
    return runner.invoke(cli.app, list(args), input=input)


def stats_head(res) -> str:
    """The part of the stats line that does not depend on timing."""
    return summary(res.stats).split(" · ")[0] + f" · nudged {res.stats.nudge_share:.0%} of tokens"


def test_generate_prints_answer_and_stats(tiny, loads):
    expected = tiny.generate("Tell me a story.", gamma=0.5, max_new_tokens=12)
    assert {s.source for s in expected.spans} == {"base", "nudger"}, "the tiny pair should mix sources at gamma 0.5"
    for stream_flag in ("--no-stream", "--stream"):
        out = run("generate", "Tell me a story.", *OPTS, stream_flag)
        assert out.exit_code == 0, out.output
        assert to_text(expected).plain in out.stdout
        assert stats_head(expected) in out.stdout
        assert f"stop: {expected.stats.stop_reason}" in out.stdout
    assert loads == [("embedded:base", "embedded:nudger", None)] * 2


def test_generate_passes_model_options(loads):
    out = run("generate", "Hi", "-n", "3", "--base", "some/base", "--nudger", "./chat-model", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert loads == [("some/base", "./chat-model", "cpu")]


def test_generate_json_is_the_result(tiny, loads):
    out = run("generate", "Tell me a story.", *OPTS, "--json", "--stop", "zzz-never")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)  # nothing but JSON on stdout
    assert "".join(s["text"] for s in data["spans"]) == data["text"]
    expected = tiny.generate("Tell me a story.", gamma=0.5, max_new_tokens=12)
    assert data["text"] == expected.text
    assert data["spans"] == [{"text": s.text, "source": s.source} for s in expected.spans]
    assert data["stats"]["output_tokens"] == expected.stats.output_tokens
    assert set(data["prompts"]) == {"base", "nudger"}


def test_base_only_means_gamma_zero(tiny, loads):
    out = run("generate", "Tell me a story.", "-n", "8", "--base-only", "--gamma", "0.9", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["text"] == tiny.generate("Tell me a story.", gamma=0, max_new_tokens=8).text
    assert data["stats"]["nudger_tokens"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "Hi", "--gamma", "-0.1"], "gamma must be a number >= 0"),
        (["generate", "Hi", "--gamma", "nan"], "gamma must be a number >= 0"),
        (["generate", "Hi", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["generate", "Hi", "--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
        (["generate", "   "], "the prompt is empty"),
        (["chat", "--temperature", "-1"], "temperature must be"),
    ],
)
def test_bad_values_exit_2_before_loading(loads, args, message):
    out = run(*args)
    assert out.exit_code == 2
    assert message in " ".join(out.output.split())  # the usage box may wrap long messages
    assert "Traceback" not in out.output
    assert loads == []


def test_missing_model_path_exits_2_with_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    out = run("generate", "Hi", "--base", str(missing))
    assert out.exit_code == 2
    assert "does not exist" in out.stderr and "no-such-model" in out.stderr
    assert out.stdout == "" and "Traceback" not in out.output


def test_prompt_too_long_exits_2(tiny, loads):
    window = tiny.base.context_window
    out = run("generate", "word " * (window + 10), "-n", "2")
    assert out.exit_code == 2
    assert "context window" in out.stderr and "Traceback" not in out.output


def test_chat_keeps_history_and_resets(tiny, loads, monkeypatch):
    seen = []
    real_stream = tiny.stream

    def spy(prompt, config=None, **kw):
        seen.append([dict(m) for m in prompt])
        return real_stream(prompt, config, **kw)

    monkeypatch.setattr(tiny, "stream", spy)
    out = run("chat", "--gamma", "0.5", "-n", "6", "--system", "Be brief.", input="Hello\n\nTell me more\n/oops\n/reset\nAgain\n/exit\nnever read\n")
    assert out.exit_code == 0, out.output
    assert len(seen) == 3
    first = tiny.generate([{"role": "user", "content": "Hello"}], gamma=0.5, max_new_tokens=6, system="Be brief.")
    assert seen[0] == [{"role": "user", "content": "Hello"}]
    assert seen[1] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "Tell me more"},
    ]
    assert seen[2] == [{"role": "user", "content": "Again"}]
    assert "unknown command /oops" in out.stdout
    assert out.stdout.count("stop: ") == 3


def test_chat_ends_at_end_of_input(loads):
    out = run("chat", "-n", "2", input="Hi\n")
    assert out.exit_code == 0, out.output
    assert out.stdout.count("stop: ") == 1


def test_render_html_and_text():
    spans = [Span("a < b ", "base"), Span("& so", "nudger"), Span(" on", "base")]
    html = to_html(spans, css=False)
    assert html == '<div class="nudging">a &lt; b <span class="nudger">&amp; so</span> on</div>'
    assert to_html(spans).startswith("<style>")
    text = to_text(spans)
    assert text.plain == "a < b & so on"
    assert [text.plain[s.start : s.end] for s in text.spans if s.style] == ["& so"]


def test_bench_command_writes_json(loads, tmp_path):
    result = run("bench", "--gamma", "0.5", "--gamma", "1.5", "--max-new-tokens", "8", "--prompts", "2", "--warmup", "0", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [r["gamma"] for r in data] == [0.5, 1.5]
    assert all(len(r["pairs"]) == 2 and r["summary"]["median_ratio"] > 0 for r in data)
    assert "ratio" in result.output


def test_serve_command_builds_the_app(loads, monkeypatch):
    served = {}
    monkeypatch.setattr("nudging.serving.app.run_server", lambda app, host, port: served.update(app=app, host=host, port=port))
    result = run("serve", "--port", "8123", "--gamma", "0.3", "--model-name", "mine")
    assert result.exit_code == 0, result.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
    assert any(getattr(r, "path", "") == "/v1/chat/completions" for r in served["app"].routes)


def test_compile_option_reaches_the_loader(loads, monkeypatch):
    monkeypatch.setattr("nudging.serving.app.run_server", lambda app, host, port: None)
    assert run("generate", "Hi", "-n", "2", "--compile").exit_code == 0
    assert run("serve", "--no-compile").exit_code == 0
    assert [c[3:] for c in loads] == [(True,), (False,)]


def test_serve_rejects_bad_gamma(loads):
    result = run("serve", "--gamma", "-1")
    assert result.exit_code == 2 and "gamma" in result.output


def test_serve_passes_key_origins_and_limits(loads, monkeypatch):
    """--api-key (or NUDGING_API_KEY), --allowed-origins, --max-tokens and --request-timeout reach the app."""
    from fastapi.testclient import TestClient

    served = {}
    monkeypatch.setattr("nudging.serving.app.run_server", lambda app, host, port: served.update(app=app))
    result = run("serve", "--api-key", "k1", "--allowed-origins", "https://a.example", "--max-tokens", "3", "--request-timeout", "30")
    assert result.exit_code == 0, result.output
    with TestClient(served["app"]) as http:
        assert http.get("/v1/models").status_code == 401
        ok = http.get("/v1/models", headers={"Authorization": "Bearer k1", "Origin": "https://a.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://a.example"
        r = http.post("/v1/completions", json={"prompt": "hi", "max_tokens": 4}, headers={"Authorization": "Bearer k1"})
        assert r.status_code == 400 and "limited to 3" in r.json()["error"]["message"]
    monkeypatch.setenv("NUDGING_API_KEY", "from-env")
    assert run("serve").exit_code == 0
    with TestClient(served["app"]) as http:
        assert http.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200
        assert http.get("/v1/models").status_code == 401 and http.get("/health").status_code == 200


def test_dtype_option_reaches_the_loader(loads):
    assert run("generate", "Hi", "-n", "2", "--dtype", "bfloat16").exit_code == 0
    assert run("generate", "Hi", "-n", "2").exit_code == 0
    assert [c[3:] for c in loads] == [("bfloat16",), ()]


def test_a_bad_dtype_is_named_before_any_weights_load():
    result = run("generate", "Hi", "--dtype", "int8")
    assert result.exit_code == 2 and "dtype" in result.output and "int8" in result.output


def test_tokenizer_options_reach_the_loader(loads, monkeypatch, tmp_path):
    """--base-tokenizer / --nudger-tokenizer on generate, chat, serve and bench."""
    monkeypatch.setattr("nudging.serving.app.run_server", lambda app, host, port: None)
    tok = ("--base-tokenizer", "./base-tok", "--nudger-tokenizer", "./chat-tok")
    assert run("generate", "Hi", "-n", "2", *tok).exit_code == 0
    assert run("chat", "-n", "2", *tok, input="/exit\n").exit_code == 0
    assert run("serve", *tok).exit_code == 0
    assert run("bench", "--prompts", "1", "-n", "2", "--warmup", "0", "--out", str(tmp_path), *tok).exit_code == 0
    assert [c for c in loads if c[0] == "tokenizers"] == [("tokenizers", "./base-tok", "./chat-tok")] * 4


def test_a_base_served_under_a_short_name_works(tiny, tmp_path):
    """A base behind an OpenAI-compatible server whose model name is not an HF id or folder: its
    tokenizer comes from --base-tokenizer (the real loader, a real server on loopback)."""
    from nudging.serving import serve_in_thread
    from nudging.serving.plain import create_plain_app

    tiny.base.tokenizer.save_pretrained(tmp_path / "base-tok")
    tiny.nudger.model.save_pretrained(tmp_path / "chat")
    tiny.nudger.tokenizer.save_pretrained(tmp_path / "chat")
    want = tiny.generate("Tell me a story.", gamma=0.5, max_new_tokens=8).text
    with serve_in_thread(create_plain_app(tiny.base.model, tiny.base.tokenizer, "short")) as url:
        without = run("generate", "Tell me a story.", "--base", f"{url}#short", "--nudger", str(tmp_path / "chat"), "--json")
        assert without.exit_code == 2 and "short" in without.output
        out = run("generate", "Tell me a story.", "-g", "0.5", "-n", "8", "--base", f"{url}#short", "--base-tokenizer", str(tmp_path / "base-tok"), "--nudger", str(tmp_path / "chat"), "--json", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["text"] == want


def test_serve_keeps_the_pairs_own_tool_settings(loads, tiny, monkeypatch):
    """The command line's gamma and budget, the loaded pair's call_threshold, call_gamma and grounded_calls (the
    embedded nudger's measured ones): the CLI builds a fresh config, which must not drop them."""
    from nudging.serving import app as serving_app

    got = {}
    real = serving_app.create_app
    monkeypatch.setattr(tiny, "config", tiny.config.merged(call_threshold=0.2, call_gamma=2.0, grounded_calls=True))
    monkeypatch.setattr(serving_app, "create_app", lambda nudger, **kw: got.update(kw) or real(nudger, **kw))
    monkeypatch.setattr("nudging.serving.app.run_server", lambda app, host, port: None)
    assert run("serve", "--gamma", "0.3").exit_code == 0
    cfg = got["config"]
    assert (cfg.gamma, cfg.call_threshold, cfg.call_gamma, cfg.grounded_calls) == (0.3, 0.2, 2.0, True)
