"""Text moves between tokenizers without losing, duplicating or inventing characters."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nudging.backends.local import LocalModel
from nudging.text.sync import (
    IncrementalDecoder,
    decode,
    encode_continuation,
    word_boundaries,
)
from nudging.text.view import View

# unicode that stresses tokenizers: emoji (incl. ZWJ sequences), CJK, combining marks, whitespace runs
PIECES = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["😀", "👩‍👩‍👧", "中文", "é", "e\u0301", "  ", "\n\n", "\t", " word", "▁", "<bos>", "<|im_end|>", "ǅ", "🇫🇷", "ß", "\u200b"]),
)
TEXTS = st.lists(PIECES, min_size=1, max_size=6).map("".join)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _roundtrips(tok, text: str) -> bool:
    ids = tok.encode("\n" + text, add_special_tokens=False, split_special_tokens=True)
    return decode(tok, ids) == "\n" + text


@FUZZ
@given(text=TEXTS)
def test_encode_continuation_round_trips(tokenizers, text):
    for tok in tokenizers:
        if not _roundtrips(tok, text):
            continue  # characters outside the vocabulary (no byte fallback) cannot round-trip
        ids, ends = encode_continuation(tok, text)
        head = decode(tok, [tok.encode("a", add_special_tokens=False)[0]])
        assert decode(tok, tok.encode("a", add_special_tokens=False) + ids) == head + text
        assert len(ends) == len(ids)
        known = [e for e in ends if e is not None]
        assert known == sorted(known) and (not known or known[-1] == len(text))


@FUZZ
@given(parts=st.lists(TEXTS, min_size=1, max_size=5))
def test_view_decodes_to_prompt_plus_text(tokenizers, parts):
    """Foreign pieces appended one by one: the view decodes to prompt + their concatenation."""
    for tok in tokenizers:
        if not all(_roundtrips(tok, p) for p in parts):
            continue
        view = View(LocalModel(_NoModel(), tok), tok.encode("Question: hi\nAnswer:"))
        text = ""
        for p in parts:
            view.append_text(p)
            text += p
            assert view.decoded() == decode(tok, view.prompt_ids) + text
            assert view.text_len == len(text)


def test_incremental_decoder_holds_back_partial_characters(tokenizers):
    """A byte-level tokenizer splits an emoji over several ids: nothing (no U+FFFD) until it completes."""
    _, smol = tokenizers
    prompt = smol.encode("Hi", add_special_tokens=False)
    ids = smol.encode("a😀b", add_special_tokens=False)
    assert len(ids) > 3  # the emoji takes several byte ids
    dec = IncrementalDecoder(smol, prompt)
    seq, out = list(prompt), []
    for t in ids:
        seq.append(t)
        out.append(dec.step(seq))
    assert "".join(out) == "a😀b"
    assert all("\ufffd" not in piece for piece in out)
    assert out.count("") >= 2


def test_own_tokens_then_foreign_text(tokenizers):
    """Own ids (never re-tokenized) and foreign text interleave; the view always decodes to prompt + T."""
    for tok in tokenizers:
        view = View(LocalModel(_NoModel(), tok), tok.encode("Q: x\nA:"))
        text = ""
        for own, foreign in [(" Hello", " wor"), ("ld 😀", "中文 "), ("  spaces", "\n\ndone")]:
            for t in tok.encode(own, add_special_tokens=False):
                text += view.append_own(t)
            text += foreign
            view.append_text(foreign)
            assert view.decoded() == decode(tok, view.prompt_ids) + text


def test_word_boundaries():
    text = "Hello big  world\nok"
    every = list(range(len(text) + 1))
    assert word_boundaries(text, every, every) == [5, 9, 16]
    assert word_boundaries(text, [5, 16], every) == [5, 16]
    assert word_boundaries("中文没有空格", every, every) == []
    assert word_boundaries("end ", every, every) == [3]  # the boundary needs a following character
    assert word_boundaries("trailing", every, every) == []


class _NoModel:
    """Views that only append text never run a model."""

    generation_config = None

    class config:  # noqa: N801 - mimics a transformers config object
        max_position_embeddings = 1 << 20

    device = "cpu"

    def forward(self, input_ids=None, cache=None, use_cache=None, logits_to_keep=0):  # pragma: no cover
        raise AssertionError("no forward expected")


@pytest.fixture(scope="module")
def tokenizers():
    from tiny_models import real_tokenizers

    return real_tokenizers()
