"""Measured costs: the forward-time fit and the draft-length rule that reads it (decoding/costs.py)."""

import random

import pytest

from nudging.decoding.costs import CostFit, RoundStats, another_word


def test_fit_recovers_fixed_and_per_id_cost():
    rng = random.Random(0)
    fit = CostFit()
    for _ in range(300):
        n = rng.choice([1, 1, 1, 2, 3, 5, 9])
        fit.add(n, 0.050 + 0.004 * n + rng.gauss(0, 0.001))
    a, b = fit.coefficients()
    assert a == pytest.approx(0.050, rel=0.05) and b == pytest.approx(0.004, rel=0.15)
    assert fit.per_id() == pytest.approx(0.004 / 0.054, rel=0.15)


def test_fit_leans_on_its_prior_until_lengths_vary():
    fit = CostFit(prior_ratio=0.1)
    assert not fit.known and fit.coefficients() == (0.0, 0.0)
    for _ in range(20):
        fit.add(1, 0.05)  # one length only: b cannot be measured
    a, b = fit.coefficients()
    assert b / a == pytest.approx(0.1, rel=0.05) and a + b == pytest.approx(0.05, rel=0.05)


def test_prefill_sized_forwards_are_left_out():
    fit = CostFit(max_ids=48)
    fit.add(2, 0.1)
    fit.add(900, 30.0)  # a prompt's prefill says nothing about one more drafted id
    assert fit.count == 1


def test_a_batch_shares_its_fixed_cost_and_pays_every_id():
    """16 rows: the fixed cost is split 16 ways while an id costs what it costs the whole forward,
    so one more position for a row is far dearer, relative to its share, than when it runs alone."""
    alone, batch = CostFit(), CostFit()
    for n in (1, 2, 4, 8) * 20:
        alone.add(n, 0.05 + 0.004 * n)
        batch.add(16 * n, 0.05 + 0.004 * 16 * n, rows=16)
    assert batch.rows == pytest.approx(16)
    assert batch.coefficients()[0] == pytest.approx(0.05 / 16, rel=0.05)
    assert batch.per_id() > 5 * alone.per_id()


def test_round_stats_are_conditional_per_boundary():
    s = RoundStats()
    for _ in range(50):
        s.record([True])  # confident at the first boundary
        s.record([False, False, True])
    assert s.q(1) > 0.45 and s.q(2) < 0.05 and s.q(3) > 0.9 and s.q(7) == s.q(3)
    assert s.reject_all(2) == pytest.approx((1 - s.q(1)) * (1 - s.q(2)))
    s.record([False], first=2)  # a nudge's second round starts at its second boundary
    assert s.confident[1][1] == 2 + 50 + 1  # prior, the 50 rounds above, this one


def _fits(base_a, base_b, nudger_a, nudger_b):
    base, nudger = CostFit(), CostFit()
    for n in (1, 2, 4, 8) * 10:
        base.add(n, base_a + base_b * n)
        nudger.add(n, nudger_a + nudger_b * n)
    return base, nudger


def test_another_word_only_where_the_base_stays_unsure():
    base, nudger = _fits(0.08, 0.006, 0.05, 0.004)
    sure, unsure = RoundStats(), RoundStats()
    for _ in range(40):
        sure.record([True])
        unsure.record([False, False, False])
    assert not another_word(sure, 1, base, nudger)  # the first word is usually the whole nudge
    assert another_word(unsure, 1, base, nudger)  # a long nudge: save base forwards
    assert not another_word(unsure, 1, CostFit(), CostFit())  # nothing measured yet: verify early


def test_a_dearer_nudger_drafts_less():
    stats = RoundStats()
    for _ in range(10):
        stats.record([True])
        stats.record([False, True])  # the base is sure again at the first boundary half the time
    cheap = _fits(0.08, 0.006, 0.01, 0.001)
    dear = _fits(0.08, 0.006, 0.20, 0.010)
    assert another_word(stats, 1, *cheap) and not another_word(stats, 1, *dear)
