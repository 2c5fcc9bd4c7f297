"""Remote base over a real HTTP server (our plain vLLM-shaped server on loopback) + local nudger
gives the same greedy output as both local; one round trip serves a whole confident stretch."""

from __future__ import annotations

import pytest
from nudging import Nudger
from nudging.backends.remote import RemoteError, RemoteModel
from nudging.errors import ModelLoadError
from nudging.serving import serve_in_thread
from nudging.serving.plain import create_plain_app

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
