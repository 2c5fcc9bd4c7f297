"""Remote base over a real HTTP server (our plain vLLM-shaped server on loopback) + local nudger
gives the same greedy output as both local; one round trip serves a whole confident stretch."""

from __future__ import annotations

import pytest
from nudging import Nudger
from nudging.backends.remote import RemoteError, RemoteModel
from nudging.errors import ModelLoadError
from nudging.serving import serve_in_thread
from nudging.serving.plain import create_plain_app
from recording import Recording

PROMPTS = ["Give three tips for sleep.", "What is the capital of France?"]


@pytest.fixture(scope="module")
def local_and_url():
    from tiny_models import tiny_pair

    base, base_tok, nud, nud_tok = tiny_pair("cross")
    local = Nudger(base, base_tok, nud, nud_tok)
    with serve_in_thread(create_plain_app(base, base_tok, "tiny-base")) as url:
        yield local, url


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_remote_base_matches_local(local_and_url, gamma):
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    for prompt in PROMPTS:
        want = local.generate(prompt, gamma=gamma, max_new_tokens=30)
        got = mixed.generate(prompt, gamma=gamma, max_new_tokens=30)
        assert got.text == want.text
        assert got.spans == want.spans
        if gamma == 0.0:
            # the server's greedy lookahead serves confident stretches: far fewer round trips than tokens
            assert got.stats.base_forwards < got.stats.output_tokens / 2
            assert got.stats.speculated_tokens > 0


def test_from_pretrained_with_url(local_and_url, tmp_path):
    local, url = local_and_url
    nudger = Nudger.from_pretrained(base=f"{url}#tiny-base", nudger=local.nudger.model, base_tokenizer=local.base.tokenizer, nudger_tokenizer=local.nudger.tokenizer)
    assert nudger.generate(PROMPTS[0], gamma=0.5, max_new_tokens=12).text == local.generate(PROMPTS[0], gamma=0.5, max_new_tokens=12).text


def test_unknown_model_name(local_and_url):
    local, url = local_and_url
    with pytest.raises(ModelLoadError, match="not 'other'"):
        RemoteModel(url, "other", local.base.tokenizer)


def test_unreachable_server_fails_clearly(local_and_url):
    local, _ = local_and_url
    with pytest.raises(RemoteError, match="failed after 2 tries"):
        RemoteModel("http://127.0.0.1:9/v1", "x", local.base.tokenizer, retries=1, timeout=2.0)


def test_server_without_logprobs_is_named(local_and_url, monkeypatch):
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    monkeypatch.setattr(remote, "top_logprobs", None)  # a request without logprobs gets none back
    with pytest.raises(RemoteError, match="no logprobs"):
        Nudger(remote, None, local.nudger.model, local.nudger.tokenizer).generate("Hi", max_new_tokens=3)


def test_verification_sends_prompt_lists_without_echo(local_and_url):
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    remote.client = spy = Recording(remote.client, hold=0.05)
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    # K-id drafts: several boundaries a round, the later ones asked for as one list
    got = mixed.generate(PROMPTS[0], gamma=0.5, max_new_tokens=30, adaptive_draft=False)
    assert got.text == local.generate(PROMPTS[0], gamma=0.5, max_new_tokens=30, adaptive_draft=False).text
    bodies = [b for b in spy.bodies if b]
    assert not any(b.get("echo") for b in bodies)
    assert any(isinstance(b["prompt"][0], list) for b in bodies), "a draft's boundaries go as one list of prompts"
    # every answer id the base saw arrived in a request at most once per round, plus the draft rows
    assert got.stats.base_forwards <= 2 * got.stats.rounds + got.stats.output_tokens / 4


def test_batch_rows_are_requested_concurrently(local_and_url):
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    remote.client = spy = Recording(remote.client, hold=0.05)
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    prompts = PROMPTS + ["Name two rivers.", "Say hello."]
    got = mixed.generate_batch(prompts, gamma=0.5, max_new_tokens=12)
    assert spy.most >= 3
    assert [r.text for r in got] == [local.generate(p, gamma=0.5, max_new_tokens=12).text for p in prompts]


def test_window_end_stops_with_length(local_and_url):
    """The plain server (like vLLM) answers 400 past its window: requests shrink to fit, and the
    answer ends with "length" where the local pair's budget ends."""
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    assert remote.context_window == 2048
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    prompt = "Count: " + " ".join(str(i % 10) for i in range(1000))
    n_prompt = mixed.generate(prompt, max_new_tokens=1).stats.prompt_tokens
    assert 2048 - 40 < n_prompt < 2048 - 4, n_prompt
    for gamma in (0.0, 0.5):
        got = mixed.generate(prompt, gamma=gamma, max_new_tokens=100)
        assert got.stats.stop_reason == "length"
        assert got.text == local.generate(prompt, gamma=gamma, max_new_tokens=2048 - n_prompt).text


def test_upstream_failures_are_502_or_503(local_and_url):
    """Our server answers a failing remote base with 503 + Retry-After (unreachable) or 502 (bad answer), not 400."""
    import httpx
    from nudging.serving import create_app

    local, url = local_and_url
    bad = RemoteModel(url, "tiny-base", local.base.tokenizer, top_logprobs=50, retries=0)  # past the server's max logprobs: 400
    with serve_in_thread(create_plain_app(local.base.model, local.base.tokenizer, "tiny-base")) as other:
        gone = RemoteModel(other, "tiny-base", local.base.tokenizer, retries=0, timeout=2.0)
    # `other` is down now: its base is unreachable
    for remote, status in ((gone, 503), (bad, 502)):
        app = create_app(Nudger(remote, None, local.nudger.model, local.nudger.tokenizer), model_name="m")
        with serve_in_thread(app) as ours:
            r = httpx.post(ours + "/completions", json={"model": "m", "prompt": "Hi", "max_tokens": 4}, timeout=60)
        assert r.status_code == status, r.text
        assert r.json()["error"]["type"] == "server_error"
        assert (r.headers.get("retry-after") is not None) == (status == 503)


def test_eos_from_the_tokenizer_folders_generation_config(local_and_url, tmp_path):
    import json

    from nudging.loading import load_remote

    local, url = local_and_url
    local.base.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 11]}))
    remote = load_remote(f"{url}#tiny-base", tokenizer=str(tmp_path))
    assert {7, 11} <= remote.eos_ids
    assert local.base.tokenizer.eos_token_id in remote.eos_ids


def test_sampling_is_top_k_over_the_returned_logprobs(local_and_url):
    """A remote row is exact only for the server's top-k: sampling draws from those, renormalised
    (the tail mass is not spread as uniform random tokens), while top-1 probability stays exact."""
    import torch
    from nudging.config import SamplingParams
    from nudging.decoding.sampling import Sampler

    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer, top_logprobs=3)
    top = {"token_id:5": -1.2, "token_id:9": -1.6, "token_id:2": -2.3}  # 0.30 + 0.20 + 0.10: 40% tail
    row = remote.row(top)
    assert abs(float(torch.softmax(row, -1)[5]) - 0.301) < 1e-3
    sampler = Sampler(SamplingParams(temperature=1.0), seed=0, support=remote.capabilities.top_k)
    draws = [sampler.pick(row) for _ in range(600)]
    assert set(draws) <= {5, 9, 2}
    assert abs(draws.count(5) / 600 - 0.5) < 0.08  # 0.30 / 0.60


@pytest.mark.parametrize("gamma", [0.3, 0.5])
def test_verification_asks_later_boundaries_only_when_needed(local_and_url, monkeypatch, gamma):
    """Two-phase verification: the first word boundary alone, the rest only where the base was not
    confident there. Same text as asking every boundary at once, and fewer prompts (prefill) sent."""
    from nudging.decoding.run import Run
    from nudging.decoding.verify import ids_until

    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    sent: list[int] = []
    real_score = RemoteModel.score
    monkeypatch.setattr(RemoteModel, "score", lambda self, prompts, *rest: (sent.append(len(prompts)), real_score(self, prompts, *rest))[1])

    def run_all() -> tuple[list, int, int]:
        sent.clear()
        out = [mixed.generate(p, gamma=gamma, max_new_tokens=40) for p in PROMPTS]
        return [(r.text, r.spans) for r in out], sum(sent), sum(r.stats.rounds for r in out)

    two, two_sent, rounds = run_all()

    def one_phase(self, b_ids, b_ends, bounds, draft):
        need = sorted({ids_until(b_ends, c) - 1 for c in bounds} | ({len(b_ids) - 1} if draft.eos or not bounds else set()))
        return (yield from self.B.forward_draft(b_ids, need))

    monkeypatch.setattr(Run, "_verify", one_phase)
    one, one_sent, _ = run_all()
    assert rounds > 0 and two == one
    assert two_sent < one_sent
