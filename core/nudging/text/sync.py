"""Moving text between tokenizers without losing or inventing characters.

Two directions:
* a model's own new tokens become text (`IncrementalDecoder`): a token that ends inside a
  multi-byte character yields nothing until the character is complete, so "\\ufffd" never leaks;
* text written by the other model becomes ids (`encode_continuation`): tokenized as a
  continuation of earlier text, so no BOS and no SentencePiece dummy-prefix space is added.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"
# Text placed before a continuation so the tokenizer sees "middle of a text". Several, because an
# anchor can merge with the continuation's first character ("\n" + "\n..." is one token).
_ANCHORS = ("\n", "a", ".", "§", "0")


def decode(tokenizer: Any, ids: list[int]) -> str:
    """Decode exactly: keep special tokens and spacing as the ids say."""
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _encode(tokenizer: Any, text: str) -> list[int]:
    try:
        return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    except TypeError:  # tokenizers without split_special_tokens
        return tokenizer.encode(text, add_special_tokens=False)


def encode_continuation(tokenizer: Any, text: str) -> tuple[list[int], list[int | None]]:
    """Ids for `text` written after earlier text, and where each id ends in `text`.

    ends[i] is the character offset in `text` just after id i, or None when id i ends inside a
    character (byte-fallback pieces). Tries several anchors and keeps the first tokenization that
    splits cleanly after the anchor and decodes back to `text` exactly.
    """
    if not text:
        return [], []
    for anchor in _ANCHORS:
        a_ids = _encode(tokenizer, anchor)
        ids = _encode(tokenizer, anchor + text)
        if ids[: len(a_ids)] != a_ids:
            continue
        rest = ids[len(a_ids) :]
        ends = _token_ends(tokenizer, a_ids, rest, text)
        if ends is not None:
            return rest, ends
    # No anchor splits cleanly: tokenize character by character (each piece in context), which
    # always round-trips for characters the vocabulary can express.
    out: list[int] = []
    out_ends: list[int | None] = []
    offset = 0
    a_ids = _encode(tokenizer, "\n")
    for ch in text:
        ids = _encode(tokenizer, "\n" + ch)
        piece = ids[len(a_ids) :] if ids[: len(a_ids)] == a_ids else _encode(tokenizer, ch)
        offset += 1
        out.extend(piece)
        out_ends.extend([None] * (len(piece) - 1) + [offset])
    return out, out_ends


def _token_ends(tokenizer: Any, a_ids: list[int], rest: list[int], text: str) -> list[int | None] | None:
    """Character ends of each id of `rest` within `text`, or None if `rest` does not decode to `text`."""
    head = decode(tokenizer, a_ids)
    full = decode(tokenizer, a_ids + rest)
    if not full.startswith(head) or full[len(head) :] != text:
        return None
    return _windowed_ends(tokenizer, a_ids, rest, text) or _prefix_ends(tokenizer, a_ids, rest, text, head)


def _windowed_ends(tokenizer: Any, a_ids: list[int], rest: list[int], text: str, window: int = 4) -> list[int | None] | None:
    """Linear time: each id's text from a decode of a few ids before it (as IncrementalDecoder does).
    None when the pieces do not add up to `text` exactly (a tokenizer whose decode of an id depends on
    more context): then every prefix is decoded instead."""
    seq = a_ids + rest
    done, pos = len(a_ids), 0  # seq[:done] decodes to the anchor + text[:pos]
    ends: list[int | None] = []
    for j in range(len(a_ids) + 1, len(seq) + 1):
        lo = max(0, done - window)
        prefix, part = decode(tokenizer, seq[lo:done]), decode(tokenizer, seq[lo:j])
        new = part[len(prefix) :]
        if part.startswith(prefix) and not part.endswith(REPLACEMENT) and text.startswith(new, pos):
            done, pos = j, pos + len(new)
            ends.append(pos)
        else:
            ends.append(None)
    if pos != len(text) and not (ends and ends[-1] is None and text.endswith(REPLACEMENT)):
        return None
    if ends and ends[-1] is None:  # text itself ends with U+FFFD
        ends[-1] = len(text)
    return ends


def _prefix_ends(tokenizer: Any, a_ids: list[int], rest: list[int], text: str, head: str) -> list[int | None]:
    ends: list[int | None] = []
    for i in range(1, len(rest) + 1):
        part = decode(tokenizer, a_ids + rest[:i])[len(head) :]
        ends.append(len(part) if text.startswith(part) and not part.endswith(REPLACEMENT) else None)
    if ends and ends[-1] is None:  # text itself ends with U+FFFD
        ends[-1] = len(text)
    return ends


class IncrementalDecoder:
    """Turns a model's own ids into text one id at a time, holding back incomplete characters.

    Decodes a short window ending at the newest id (so SentencePiece's leading-space rule and
    byte pieces see the same context as a full decode would) and returns only the new characters.
    """

    MAX_HOLD = 8  # a genuine U+FFFD in the vocabulary is released after this many ids

    def __init__(self, tokenizer: Any, ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.reset(ids)

    def reset(self, ids: list[int]) -> None:
        """Resynchronise after text was appended by other means or ids were dropped."""
        self.prefix_offset = max(0, len(ids) - 4)
        self.read_offset = len(ids)
        self.pending = 0  # ids decoded into no text yet (an incomplete character)

    def step(self, ids: list[int]) -> str:
        """Text added by the last id of `ids` (possibly completing earlier held ids)."""
        prefix = decode(self.tokenizer, ids[self.prefix_offset : self.read_offset])
        full = decode(self.tokenizer, ids[self.prefix_offset :])
        held = len(ids) - self.read_offset
        if full.endswith(REPLACEMENT) and held < self.MAX_HOLD:
            self.pending = held
            return ""
        if not full.startswith(prefix):  # the window shifted a leading-space decision; widen it
            prefix = decode(self.tokenizer, ids[: self.read_offset])
            full = decode(self.tokenizer, ids)
        self.prefix_offset = self.read_offset
        self.read_offset = len(ids)
        self.pending = 0
        return full[len(prefix) :]


def word_boundaries(text: str, ends_a: list[int | None], ends_b: list[int | None]) -> list[int]:
    """Offsets where a word ends in `text` and both tokenizations have a token boundary.

    A word ends at c when text[c] is whitespace and text[c-1] is not. The text after the last
    such offset is never a candidate (its word may still be growing).
    """
    common = {e for e in ends_a if e is not None} & {e for e in ends_b if e is not None}
    return [c for c in sorted(common) if 0 < c < len(text) and text[c].isspace() and not text[c - 1].isspace()]
