"""Bad input gets a clear error; chat messages and templates; cancellation frees the caches."""

from __future__ import annotations

import math
import threading

import pytest
from nudging import ConfigError, EntropyPolicy, InputError, Nudger, NudgingConfig


@pytest.mark.parametrize("prompt", ["", "   \n", [], [{"role": "system", "content": "only system"}]])
def test_empty_prompt(pair, prompt):
    with pytest.raises(InputError, match="empty|no non-empty user"):
        pair.generate(prompt)


@pytest.mark.parametrize(
    "messages, match",
    [
        ([{"role": "wizard", "content": "hi"}], "unknown role 'wizard'"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        (["hello"], "must be a dict"),
    ],
)
def test_malformed_messages(pair, messages, match):
    with pytest.raises(InputError, match=match):
        pair.generate(messages)


def test_prompt_longer_than_context(pair):
    window = pair.base.context_window
    with pytest.raises(InputError, match="longer than its context window"):
        pair.generate("word " * (window + 10))


@pytest.mark.parametrize("gamma", [-0.1, math.nan, "0.4", None.__class__])
def test_gamma_out_of_range(gamma):
    with pytest.raises(ConfigError, match="gamma"):
        NudgingConfig(gamma=gamma)


@pytest.mark.parametrize(
    "field, value",
    [("draft_tokens", 0), ("max_new_tokens", 0), ("temperature", -1.0), ("top_p", 0.0), ("top_p", 1.5), ("stop", [""]), ("seed", 1.5)],
)
def test_config_ranges(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        NudgingConfig(**{field: value})


def test_gamma_above_one_means_always_nudge(pair):
    for gamma in (1.0001, 5.0, math.inf):
        res = pair.generate("Say hi.", gamma=gamma, max_new_tokens=12)
        assert res.stats.base_tokens == 0


def test_chat_messages_use_the_nudger_template_and_plain_base_text(pair):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
    ]
    res = pair.generate(messages, max_new_tokens=5)
    assert res.prompts["base"] == "Be brief.\nQuestion: Name a color.\nAnswer: Blue.\nQuestion: Another?\nAnswer: "
    expected = pair.nudger.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert res.prompts["nudger"] == expected


def test_template_without_system_role_folds_system_into_first_user_turn(pair):
    tok = pair.nudger.tokenizer
    saved = tok.chat_template
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "<turn>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}<turn>assistant: "
    )
    try:
        res = pair.generate([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}], max_new_tokens=3)
    finally:
        tok.chat_template = saved
    assert res.prompts["nudger"] == "<turn>user: Be kind.\n\nHi\n<turn>assistant: "


def test_cancel_event_stops_generation(pair):
    cancel = threading.Event()
    cancel.set()
    res = pair.generate("Tell a long story.", gamma=0.5, max_new_tokens=50, cancel=cancel)
    assert res.stats.stop_reason == "cancelled" and res.text == ""


def test_closing_a_stream_frees_both_caches(pair):
    run = pair._run("Tell a long story.", None, None, {"gamma": 0.5, "max_new_tokens": 50})
    events = run.events()
    next(events)
    events.close()
    assert run.B.kv.cache is None and run.N.kv.cache is None


def test_other_policies_plug_in(pair):
    always_base = Nudger(pair.base.model, pair.base.tokenizer, pair.nudger.model, pair.nudger.tokenizer, policy=EntropyPolicy(1e9))
    never_base = Nudger(pair.base.model, pair.base.tokenizer, pair.nudger.model, pair.nudger.tokenizer, policy=EntropyPolicy(0.0))
    assert always_base.generate("Hi", max_new_tokens=10).stats.nudger_tokens == 0
    assert never_base.generate("Hi", max_new_tokens=10).stats.base_tokens == 0


@pytest.fixture(scope="module")
def stuck(pair):
    """The pair's base nudged by a model that always writes " the": every nudge is the same."""
    from tiny_models import stuck_llama

    tok = pair.nudger.tokenizer
    return Nudger(pair.base.model, pair.base.tokenizer, stuck_llama(tok, " the"), tok)


@pytest.mark.parametrize("limit", [3, 5])
def test_repetition_guard(stuck, limit):
    """The same nudge accepted `repetition_limit` rounds in a row ends generation (the paper's guard)."""
    res = stuck.generate("Hi", gamma=1.5, max_new_tokens=40, draft_tokens=1, repetition_limit=limit)
    assert res.stats.stop_reason == "repetition"
    assert res.stats.rounds == limit
    assert res.text == " the" * limit
    assert res.stats.base_tokens == 0


def test_repetition_guard_off(stuck):
    """repetition_limit=0 turns the guard off: the same nudge repeats until the budget ends it."""
    res = stuck.generate("Hi", gamma=1.5, max_new_tokens=12, draft_tokens=1, repetition_limit=0)
    assert res.stats.stop_reason == "length"
    assert res.stats.output_tokens == 12
    assert res.text == " the" * res.stats.rounds and res.stats.rounds >= 6  # " the" is one or two base ids


def test_paper_compat_first_word_from_the_nudger(pair):
    """paper_compat: even a base that is confident everywhere (gamma 0) lets the nudger write the first word."""
    plain = pair.generate("Say hi.", gamma=0.0, max_new_tokens=20)
    compat = pair.generate("Say hi.", gamma=0.0, max_new_tokens=20, paper_compat=True)
    assert plain.spans[0].source == "base"
    assert compat.spans[0].source == "nudger" and compat.stats.rounds == 1
    assert compat.text.split()[0] == compat.spans[0].text.split()[0]
