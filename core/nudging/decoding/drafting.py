"""Drafts for the base's own stretches (DESIGN.md "Drafting for the base's own stretches").

Where the base writes, its next ids are often predictable from what was already written (names,
phrases of the question, list scaffolding). A `Drafter` proposes a few base-tokenizer ids after the
view's current ids; the base forward that runs the id just chosen also runs them (the view's
lookahead), and each drafted id is used only when the base's own choice equals it, so outputs are
exactly those of drafting off. Two sources, after Adaptix (Liu et al., AAAI 2025) and prompt lookup:

* prompt lookup: the latest earlier occurrence of the last three ids; the ids that followed it;
* an adaptive tri-gram table over the view's ids (prompt, own and foreign), optionally backed by a
  read-only corpus table; a path is grown greedily by the best-scoring next id, where the score
  weighs an edge's count by how often drafting it was accepted (untried edges get an optimistic
  prior: exploration; well-accepted edges win: exploitation).

The table only ever holds ids of the view itself, never a draft: a draft joins it only once the base
wrote those ids, and a view cut back is rolled back out of it. The draft length follows the measured
acceptance and the cost of one more position in a forward (`cost_per_id`, relative to a one-id forward).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

Key = tuple[int, int]


class NgramTable:
    """Tri-gram counts over one tokenizer's ids: (a, b) -> {c: count}."""

    def __init__(self, name: str = "") -> None:
        self.name = name  # the tokenizer it was built for
        self.next: dict[Key, dict[int, float]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.next.values())

    def add(self, a: int, b: int, c: int, weight: float = 1.0) -> None:
        row = self.next.setdefault((a, b), {})
        row[c] = row.get(c, 0.0) + weight

    def remove(self, a: int, b: int, c: int, weight: float = 1.0) -> None:
        """Undo one `add` (rollback)."""
        row = self.next[(a, b)]
        row[c] -= weight
        if row[c] <= 1e-9:
            del row[c]
            if not row:
                del self.next[(a, b)]

    def fill(self, ids: Sequence[int]) -> None:
        """Count every tri-gram of one id sequence."""
        for i in range(2, len(ids)):
            self.add(ids[i - 2], ids[i - 1], ids[i])

    @classmethod
    def from_texts(cls, tokenizer: Any, texts: Iterable[str], name: str = "") -> NgramTable:
        """A corpus table: the tri-grams of each text in `tokenizer`'s ids."""
        table = cls(name or getattr(tokenizer, "name_or_path", ""))
        for text in texts:
            table.fill(tokenizer.encode(text, add_special_tokens=False))
        return table

    def save(self, path: str | Path) -> Path:
        rows = [(a, b, c, n) for (a, b), row in self.next.items() for c, n in row.items()]
        data = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
        torch.save({"name": self.name, "trigrams": data}, path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> NgramTable:
        saved = torch.load(path, weights_only=True)
        table = cls(saved["name"])
        for a, b, c, n in saved["trigrams"].tolist():
            table.add(int(a), int(b), int(c), n)
        return table


class Drafter:
    """One run's drafter for the base view: proposes ids, learns from what the view appended."""

    LOCAL_WEIGHT = 4.0  # a tri-gram of this very answer counts as much as this many corpus ones
    MIN_SCORE = 0.2  # an untried edge that is the only one seen scores 0.5, one of two equal ones 0.25

    def __init__(self, corpus: NgramTable | None = None, max_len: int = 8, cost_per_id: float = 0.07, eos_ids: frozenset[int] = frozenset()) -> None:
        self.corpus = corpus
        self.max_len = max_len
        self.cost_per_id = cost_per_id
        self.eos_ids = eos_ids
        self.table = NgramTable()
        self.ids: list[int] = []  # the view ids already counted into the table
        self.where: dict[tuple[int, int, int], list[int]] = {}  # tri-gram -> positions after it (prompt lookup)
        self.edges: dict[tuple[int, int, int], list[float]] = {}  # tri-gram -> [drafted, accepted]
        self.tried, self.hits = 2.0, 1.0  # per-position acceptance, prior 1/2
        self.proposed = 0  # drafted ids, over the run
        self.accepted = 0  # drafted ids the base then wrote
        self._pending: tuple[int, list[int]] | None = None  # (position, draft) of the last proposal

    # -- learning ---------------------------------------------------------------------------
    def observe(self, ids: Sequence[int]) -> None:
        """Bring the table to the view's ids: count the new ones, roll back any that were cut."""
        n = len(self.ids)
        if len(ids) < n or list(ids[:n]) != self.ids:
            keep = next((i for i, (x, y) in enumerate(zip(ids, self.ids)) if x != y), min(len(ids), n))
            self.rollback(keep)
        self._score_pending(ids)
        for i in range(len(self.ids), len(ids)):
            self.ids.append(ids[i])
            if i >= 2:
                gram = (ids[i - 2], ids[i - 1], ids[i])
                self.table.add(*gram, weight=self.LOCAL_WEIGHT)
                self.where.setdefault(gram, []).append(i + 1)

    def rollback(self, n: int) -> None:
        """Forget the view ids from position n on (the view was cut back there)."""
        for i in range(len(self.ids) - 1, max(n, 2) - 1, -1):
            gram = (self.ids[i - 2], self.ids[i - 1], self.ids[i])
            self.table.remove(*gram, weight=self.LOCAL_WEIGHT)
            spots = self.where[gram]
            spots.pop()
            if not spots:
                del self.where[gram]
        del self.ids[n:]
        if self._pending is not None and self._pending[0] > n:
            self._pending = None

    def settle(self, ids: Sequence[int]) -> None:
        """The run is over: score the last draft by what the view took of it."""
        self._score_pending(ids, final=True)

    def _score_pending(self, ids: Sequence[int], final: bool = False) -> None:
        """How much of the last draft the view took: feeds the acceptance estimates."""
        if self._pending is None or (len(ids) <= self._pending[0] and not final):
            return
        start, draft = self._pending
        got = ids[start : start + len(draft)]
        k = next((i for i, (x, y) in enumerate(zip(got, draft)) if x != y), len(got))
        if k == len(got) and len(got) < len(draft) and not final:
            return  # the view has not reached the end of the draft yet
        self._pending = None
        self.accepted += k
        self.hits += k
        self.tried += k + (k < len(draft))
        ctx = list(ids[max(0, start - 2) : start]) + draft
        for i in range(len(ctx) - len(draft), len(ctx)):
            if i >= 2:
                stat = self.edges.setdefault((ctx[i - 2], ctx[i - 1], ctx[i]), [0.0, 0.0])
                stat[0] += 1
                stat[1] += i - (len(ctx) - len(draft)) < k

    # -- proposing --------------------------------------------------------------------------
    def length(self) -> int:
        """Draft length with the best expected ids per unit of forward cost, at the measured per-id
        acceptance a: (1 + a + ... + a^L) / (1 + cost_per_id * L)."""
        a = min(self.hits / self.tried, 0.98)
        best, best_gain, run = 0, 1.0, 1.0
        for L in range(1, self.max_len + 1):
            run += a**L
            gain = run / (1 + self.cost_per_id * L)
            if gain > best_gain:
                best, best_gain = L, gain
        return best

    def propose(self, ids: Sequence[int], room: int) -> list[int]:
        """Up to `room` ids likely to follow `ids` (the view's ids, with the id just chosen last)."""
        self.observe(ids)
        L = min(room, self.length())
        if L <= 0 or len(ids) < 3:
            return []
        draft = self._lookup(L) or self._walk(L)
        if draft:
            self._pending = (len(ids), draft)
            self.proposed += len(draft)
        return draft

    def _lookup(self, L: int) -> list[int]:
        """Prompt lookup: what followed the latest earlier occurrence of the last three ids."""
        ids = self.ids
        for p in reversed(self.where.get((ids[-3], ids[-2], ids[-1]), ())):
            out = ids[p : p + L]  # empty for the occurrence that ends the context itself
            if out:
                return out[: next((i for i, t in enumerate(out) if t in self.eos_ids), len(out))]
        return []

    def _walk(self, L: int) -> list[int]:
        """A greedy path through the tables: at each step the next id with the best score."""
        a, b = self.ids[-2], self.ids[-1]
        out: list[int] = []
        while len(out) < L:
            c = self._best(a, b)
            if c is None or c in self.eos_ids:
                break
            out.append(c)
            a, b = b, c
        return out

    def _best(self, a: int, b: int) -> int | None:
        cands: dict[int, float] = dict(self.table.next.get((a, b), {}))
        if self.corpus is not None:
            for c, n in self.corpus.next.get((a, b), {}).items():
                cands[c] = cands.get(c, 0.0) + n
        if not cands:
            return None
        total = sum(cands.values())
        best, best_score = None, 0.0
        for c, n in cands.items():
            drafted, acc = self.edges.get((a, b, c), (0.0, 0.0))
            score = (n / total) * (acc + 1) / (drafted + 2)  # Beta(1, 1) prior on the edge's acceptance
            if score > best_score:
                best, best_score = c, score
        # an edge that is one of many, or often rejected, is not worth a forward position
        return best if best_score >= self.MIN_SCORE else None


def make_drafter(config: Any, lm: Any, max_len: int | None = None) -> Drafter | None:
    """A drafter for one model's own stretches (a NudgingConfig's `drafter`), unless drafting is off
    or the backend brings its own lookahead. A corpus table is in the base's ids: the nudger's
    drafter (`max_len` set) has none."""
    if config.drafter in (None, "off") or lm.capabilities.lookahead:
        return None
    corpus = None if config.drafter == "ngram" or max_len is not None else config.drafter
    return Drafter(corpus, max_len=max_len or config.draft_max, eos_ids=lm.eos_ids)
