"""Proxy-tuning, the paper's baseline for pairs sharing a vocabulary: checked at its two limits."""

from __future__ import annotations

import pytest
from nudging import Nudger, NudgingConfig
from nudging.errors import ConfigError
from nudging.evaluation.proxy_tuning import as_backend, proxy_generate

PROMPTS = ["Give three tips for sleep.", "What is the capital of France?"]


@pytest.fixture(scope="module")
def same():
    from tiny_models import tiny_llama, tiny_pair

    b, bt, n, nt = tiny_pair("same")
    return Nudger(b, bt, n, nt), as_backend(tiny_llama(nt, seed=9), nt)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_base_as_its_own_anti_expert_leaves_the_chat_model(same, prompt):
    """base + (chat − base) on the same base prompt is the chat model's logits: its greedy answer."""
    pair, _ = same
    cfg = NudgingConfig(max_new_tokens=24)
    res = proxy_generate(pair, pair.base, prompt, cfg)
    ref = pair.generate(prompt, cfg, gamma=2.0)  # the nudger alone
    # both budgets count ids, but the nudged one counts its text re-tokenized: compare the common part
    assert res.text.startswith(ref.text) or ref.text.startswith(res.text)
    assert min(len(res.text), len(ref.text)) > 20
    assert res.stats.nudger_tokens == 0
    if res.stats.stop_reason == "length":
        assert res.stats.output_tokens == 24
    else:
        assert res.stats.stop_reason == "eos" and res.stats.output_tokens < 24


@pytest.mark.parametrize("prompt", PROMPTS)
def test_expert_minus_its_base_steers_the_base(same, prompt):
    """With a chat model and a distinct anti-expert the answer differs from both models alone, and
    stop strings and the budget hold."""
    pair, anti = same
    res = proxy_generate(pair, anti, prompt, NudgingConfig(max_new_tokens=20))
    assert 0 < res.stats.output_tokens <= 20 and res.text == "".join(s.text for s in res.spans)
    cut = proxy_generate(pair, anti, prompt, NudgingConfig(max_new_tokens=20, stop=(res.text[3:5],))) if len(res.text) > 5 else res
    assert res.text.startswith(cut.text) and len(cut.text) <= max(3, len(res.text))


def test_different_vocabularies_are_refused(pair):
    if pair.base.tokenizer.get_vocab() == pair.nudger.tokenizer.get_vocab():
        pytest.skip("this pair shares a vocabulary")
    with pytest.raises(ConfigError, match="one vocabulary"):
        proxy_generate(pair, pair.nudger, "Hi", max_new_tokens=4)
