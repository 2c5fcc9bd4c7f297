"""Measured costs (DESIGN.md "The cost of an answer"): what a forward of each model takes, and what
nudge rounds of a model pair have been worth, so that every length choice reads measurements
instead of constants.

`CostFit` fits one model's forward time against the ids it ran, t ≈ a + b·n, from every forward
the drivers (`run.drive`, `batching.BatchDecoder`) served. `RoundStats` counts, per model pair, how often the base is confident again at the
j-th word boundary of a nudge (given it was not at the earlier ones), how many nudger ids a word
takes and how much of a draft's tail the base goes on to reproduce. Both live as long as the
backends (one registry entry each), so a new answer starts from what earlier answers measured.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch


class CostFit:
    """Running weighted least squares of one model's forward seconds on the ids it ran: t ≈ a + b·N
    for a forward over N ids in all (a batch's rows together), with the rows per forward tracked, so
    one row's share of a forward over n of its own ids reads a / rows + b·n: in a compute-bound
    batch the fixed cost is shared and every extra id costs its full price.

    Recent forwards weigh more (`decay`: load, batch size and context change). Until the ids per
    forward vary enough to separate a from b, a prior ratio b/a (`prior_ratio`) with the weight of
    `prior_weight` forwards keeps the fit sensible. Prefill-sized forwards (more than `max_ids` ids
    a row) are left out: the choices made from this fit are about a few ids.
    """

    def __init__(self, prior_ratio: float = 0.07, prior_weight: float = 4.0, decay: float = 0.995, max_ids: int = 48) -> None:
        self.prior_ratio, self.prior_weight, self.decay, self.max_ids = prior_ratio, prior_weight, decay, max_ids
        self._s = [0.0] * 6  # weighted sums: w, N, N², t, N·t, rows
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int, seconds: float, rows: int = 1) -> None:
        """One forward that ran `n` ids over `rows` rows in `seconds`."""
        if n < 1 or rows < 1 or n > self.max_ids * rows or not seconds > 0:
            return
        with self._lock:
            s = [v * self.decay for v in self._s]
            for i, v in enumerate((1.0, n, n * n, seconds, n * seconds, rows)):
                s[i] += v
            self._s = s
            self.count += 1

    @property
    def known(self) -> bool:
        return self.count > 0

    @property
    def rows(self) -> float:
        """Rows per forward, recently."""
        return self._s[5] / self._s[0] if self._s[0] > 0 else 1.0

    def coefficients(self) -> tuple[float, float]:
        """(a, b) in seconds for one row: a forward's fixed cost shared by its rows, and one id's."""
        w, sn, snn, st, snt, _ = self._s
        if w <= 0:
            return 0.0, 0.0
        # the prior as pseudo-forwards on the line through the mean, at N = 1 and N = 1 + D
        n_mean, t_mean, D = sn / w, st / w, 8.0
        a0 = t_mean / (1 + self.prior_ratio * n_mean)
        pw = self.prior_weight / 2
        for n, t in ((1.0, a0 * (1 + self.prior_ratio)), (1 + D, a0 * (1 + self.prior_ratio * (1 + D)))):
            w, sn, snn, st, snt = w + pw, sn + pw * n, snn + pw * n * n, st + pw * t, snt + pw * n * t
        var = snn - sn * sn / w
        b = max((snt - sn * st / w) / var if var > 1e-12 else a0 * self.prior_ratio, 0.0)
        a = max((st - b * sn) / w, 1e-6)
        return a / self.rows, b

    def time(self, n: int = 1) -> float:
        """Expected seconds of one row's share of a forward over n of its ids."""
        a, b = self.coefficients()
        return a + b * n

    def per_id(self) -> float:
        """One more id in a row's forward, relative to a one-id forward: b / (a + b)."""
        a, b = self.coefficients()
        return b / (a + b) if a + b > 0 else self.prior_ratio


class RoundStats:
    """What nudge rounds of one (base, nudger) pair measured."""

    DEPTH = 3  # boundary 1, 2, and 3 or later share their statistics from here on

    def __init__(self) -> None:
        self.confident = [[1.0, 2.0] for _ in range(self.DEPTH)]  # per boundary index: [hits, trials], prior 1/2
        self.word_ids = [2.6, 2.0]  # nudger ids per drafted word: [ids, words], prior 1.3
        self.tail = [1.0, 4.0]  # draft tail ids past the nudge the base reproduced: [reproduced, offered]

    def q(self, j: int) -> float:
        """P(the base is confident at boundary j (1-based) | it was not at boundaries 1..j-1)."""
        hits, trials = self.confident[min(j, self.DEPTH) - 1]
        return hits / trials

    def reject_all(self, j: int) -> float:
        """P(the base is confident at none of boundaries 1..j)."""
        p = 1.0
        for i in range(1, j + 1):
            p *= 1 - self.q(i)
        return p

    def ids_per_word(self) -> float:
        return self.word_ids[0] / self.word_ids[1]

    def tail_rate(self) -> float:
        return self.tail[0] / self.tail[1]

    def record(self, verdicts: list[bool], first: int = 1) -> None:
        """The base's verdicts at a round's boundaries, read in order up to the first confident one;
        `first`: the index of the round's first boundary within its nudge (a continued nudge)."""
        for j, ok in enumerate(verdicts, start=first):
            cell = self.confident[min(j, self.DEPTH) - 1]
            cell[0] += ok
            cell[1] += 1
            if ok:
                break

    def record_words(self, ids: int, words: int) -> None:
        if words > 0:
            self.word_ids[0] += ids
            self.word_ids[1] += words

    def record_tail(self, reproduced: int, offered: int) -> None:
        if offered > 0:
            self.tail[0] += reproduced
            self.tail[1] += offered


def another_word(stats: RoundStats, j: int, base: CostFit, nudger: CostFit) -> bool:
    """After a draft's j-th word boundary (counted through the nudge): is drafting one more word
    worth more than verifying now? More saves one base forward's fixed cost when the base would be
    unsure at every boundary so far; it wastes the next word's nudger forwards and base positions
    (less what the base reproduces of them as speculation) when it would not. Before both models
    have a measured forward, verify at the first boundary."""
    if not (base.known and nudger.known):
        return False
    a_b, b_b = base.coefficients()
    p = stats.reject_all(j)
    word = stats.ids_per_word()
    waste = word * (nudger.time(1) + b_b) - stats.tail_rate() * word * base.time(1) / 2
    return p * a_b > (1 - p) * max(0.0, waste)


_fits: weakref.WeakKeyDictionary[Any, CostFit] = weakref.WeakKeyDictionary()
_rounds: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, RoundStats]] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def cost_fit(backend: Any) -> CostFit:
    """The forward-time fit of one backend (shared by every run over it)."""
    with _registry_lock:
        fit = _fits.get(backend)
        if fit is None:
            fit = _fits[backend] = CostFit()
        return fit


def round_stats(base: Any, nudger: Any) -> RoundStats:
    """The nudge-round statistics of one model pair (shared by every run over it)."""
    with _registry_lock:
        per_base = _rounds.setdefault(base, weakref.WeakKeyDictionary())
        stats = per_base.get(nudger)
        if stats is None:
            stats = per_base[nudger] = RoundStats()
        return stats


def tail_agreement(rows: torch.Tensor, b_ids: list[int], m: int) -> int:
    """How many ids of the draft's tail the base's argmax reproduces in a row (speculation's
    best case). Computed the same with speculation on or off, so adaptive drafting keeps them equal."""
    if m == 0 or m >= len(b_ids):
        return 0
    tail = rows[m - 1 : len(b_ids) - 1]
    match = ((tail.argmax(dim=-1).cpu() == torch.tensor(b_ids[m:])) & ~tail.isnan().any(dim=-1).cpu()).tolist()  # unscored rows (NaN) agree on nothing
    return next((i for i, ok in enumerate(match) if not ok), len(match))

