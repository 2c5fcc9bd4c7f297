"""Text moves between tokenizers without losing, duplicating or inventing characters."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
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


# Text both tokenizers must carry exactly (each is checked on both, without any filtering).
TRICKY = [
    "中文没有空格",
    "日本語とEnglish混ざり",
    "😀",
    "👩‍👩‍👧 family",
    "🇫🇷🇯🇵",
    "e\u0301 and a\u0301\u0302",
    "é vs e\u0301",
    " leading space",
    "   three leading spaces",
    "\n\nnewlines\n",
    "\ttab\tand\n  indent",
    "ǅ ß \u200b",
    "<bos> <|im_end|>",
    "trailing space ",
]
# gemma's SentencePiece decodes a literal "▁" as a space (DESIGN.md): it round-trips only on SmolLM2
SPACE_MARK = ["▁", "word▁", "▁▁word", "a ▁ b"]
TOKENIZERS = [0, 1]  # index into the `tokenizers` fixture: gemma-3, SmolLM2
MIN_CHECKED = 40  # of FUZZ's 60 examples, at least this many must round-trip and be checked


def _check_encode_continuation(tok, text: str) -> None:
    ids, ends = encode_continuation(tok, text)
    head = decode(tok, [tok.encode("a", add_special_tokens=False)[0]])
    assert decode(tok, tok.encode("a", add_special_tokens=False) + ids) == head + text
    assert len(ends) == len(ids)
    known = [e for e in ends if e is not None]
    assert known == sorted(known) and (not known or known[-1] == len(text))


def _check_view(tok, parts: list[str]) -> None:
    view = View(LocalModel(_NoModel(), tok), tok.encode("Question: hi\nAnswer:"))
    text = ""
    for p in parts:
        view.append_text(p)
        text += p
        assert view.decoded() == decode(tok, view.prompt_ids) + text
        assert view.text_len == len(text)


@pytest.mark.parametrize("which", TOKENIZERS)
@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_round_trips(tokenizers, which, text):
    tok = tokenizers[which]
    assert _roundtrips(tok, text)
    _check_encode_continuation(tok, text)
    _check_view(tok, [text])
    _check_view(tok, [text[: len(text) // 2], text[len(text) // 2 :]])  # split anywhere, even mid-cluster


@pytest.mark.parametrize("text", SPACE_MARK)
def test_literal_space_mark(tokenizers, text):
    gemma, smol = tokenizers
    assert _roundtrips(smol, text)
    _check_encode_continuation(smol, text)
    _check_view(smol, [text, text])
    assert not _roundtrips(gemma, text)  # the documented exception; T, not the view, keeps the character


@pytest.mark.parametrize("which", TOKENIZERS)
def test_encode_continuation_round_trips(tokenizers, which):
    tok, checked = tokenizers[which], set()

    @FUZZ
    @given(text=TEXTS)
    def check(text):
        assume(_roundtrips(tok, text))  # characters outside the vocabulary (no byte fallback) cannot round-trip
        _check_encode_continuation(tok, text)
        checked.add(text)

    check()
    assert len(checked) >= MIN_CHECKED, f"only {len(checked)} distinct texts round-tripped and were checked"


@pytest.mark.parametrize("which", TOKENIZERS)
def test_view_decodes_to_prompt_plus_text(tokenizers, which):
    """Foreign pieces appended one by one: the view decodes to prompt + their concatenation."""
    tok, checked = tokenizers[which], set()

    @FUZZ
    @given(parts=st.lists(TEXTS, min_size=1, max_size=5))
    def check(parts):
        assume(all(_roundtrips(tok, p) for p in parts))
        _check_view(tok, parts)
        checked.add(tuple(parts))

    check()
    assert len(checked) >= MIN_CHECKED, f"only {len(checked)} distinct inputs round-tripped and were checked"


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


@pytest.mark.parametrize("which", TOKENIZERS)
def test_windowed_token_ends_equal_prefix_decoding(tokenizers, which):
    """The linear token-end computation gives what decoding every prefix gives (the quadratic reference)."""
    from nudging.text.sync import _prefix_ends, _windowed_ends

    tok = tokenizers[which]
    long = "The quick brown fox, 中文没有空格, jumps 😀 over\n\tthe lazy dog. " * 3
    for text in TRICKY + [long] + (SPACE_MARK if which == 1 else []):
        a_ids = tok.encode("\n", add_special_tokens=False)
        ids = tok.encode("\n" + text, add_special_tokens=False, split_special_tokens=True)
        if ids[: len(a_ids)] != a_ids:
            continue  # the anchor merges with the text ("\n" + "\n..."): encode_continuation takes another
        rest = ids[len(a_ids) :]
        fast = _windowed_ends(tok, a_ids, rest, text)
        assert fast is not None, text
        assert fast == _prefix_ends(tok, a_ids, rest, text, decode(tok, a_ids)), text
