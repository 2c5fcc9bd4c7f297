"""Budget-aware closing: a constrained answer ends valid within its budget (DESIGN.md "Constrained output").

A grammar alone lets a model open strings, arrays and objects until `max_new_tokens` cuts it
mid-value. Here each matcher knows how many ids its view may still append. Near the end it
computes a short completion from its state to an accepting one (forced ids first, then the
cheapest structural character that the grammar allows: close the string, the array, the
object...); once the budget left is within `MARGIN` ids of that completion's length, only ids
after which such a completion still fits are allowed: the model's own top choices where they
fit, else the completion's next id. Greedy output changes only where the model's choice could
no longer close in time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# cheapest-first characters for closing: a string's end first (inside a string every other
# character is content), then a container's end, a separator before a required key, the
# shortest values, key and string characters, and new containers last
ORDER = ['"', "}", "]", ",", "0", "1", "a", "e", "t", "f", "n", "-", " ", ":", "[", "{"]
MARGIN = 16  # ids: the most a single id is expected to add to the closing length
TOP = 8  # how many of the model's own top choices are kept where they still fit
CAP = 96  # longest completion searched for


class Closer:
    """Short completions to an accepting state for one tokenizer's matchers."""

    def __init__(self, ll_tokenizer: Any, n_vocab: int, eos_ids: frozenset[int]) -> None:
        self.order = [ids[0] for c in ORDER if len(ids := ll_tokenizer.tokenize_str(c)) == 1]
        self.n_vocab, self.eos = n_vocab, eos_ids

    def path(self, m: Any, cap: int = CAP) -> list[int] | None:
        """Ids from `m`'s state to an accepting one (greedy, so an upper bound on the shortest), or
        None when none of at most `cap` ids was found. `m` itself is not changed."""
        c = m.deep_copy()
        out: list[int] = []
        while not c.is_accepting():
            step = c.compute_ff_tokens() or next(([t] for t in self.order if c.validate_tokens([t]) == 1), None) or self._any(c)
            if not step or len(out) + len(step) > cap or not c.consume_tokens(step):
                return None
            out += step
        return out

    def _any(self, m: Any) -> list[int]:
        bits = np.unpackbits(np.frombuffer(m.compute_bitmask(), dtype=np.uint8), bitorder="little")[: self.n_vocab]
        ids = np.flatnonzero(bits)
        ids = ids[~np.isin(ids, list(self.eos))]
        return [int(ids[0])] if ids.size else []

    def allowed(self, m: Any, room: int, logits: np.ndarray, allowed: np.ndarray) -> np.ndarray | None:
        """Where closing must start (`room` ids left, the next one included): the allowed ids after
        which a completion still fits, else None (no restriction yet)."""
        if room <= 0 or room > CAP + MARGIN:
            return None
        path = self.path(m)
        if path is None or len(path) + MARGIN < room:
            return None
        keep = np.zeros_like(allowed)
        if path:
            keep[path[0]] = True
        else:  # accepting: ending is always possible
            for e in self.eos:
                if e < len(keep):
                    keep[e] = allowed[e]
        scores = np.where(allowed, logits, -np.inf)
        top = np.argpartition(-scores, TOP)[:TOP] if len(scores) > TOP else np.arange(len(scores))
        for t in top.tolist():
            if not allowed[t] or keep[t]:
                continue
            if t in self.eos:
                keep[t] = True
                continue
            c = m.deep_copy()
            if c.consume_token(t) and self.path(c, room - 1) is not None:
                keep[t] = True
        return keep & allowed if keep.any() else None
