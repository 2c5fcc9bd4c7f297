"""The cost of an answer (DESIGN.md): what each writer alone would pay for its own ids, and how far a
nudged run is from it.

Every id is counted in the base's view, as the nudge share is. c_B and c_N are seconds per such id
when each model decodes alone on the same prompt in the same process: c_B from the base alone (its
drafted run when the system drafts, HF `generate` when it does not), c_N from the nudger alone (a
γ > 1 run, where the nudger writes every id) minus that run's base forwards, which only verify and
which the nudger alone would not pay. Both alone-costs include their runs' prompt reading and their
own Python work, as the nudged run's wall time does, so overhead = wall ÷ ideal is 1.0 for a run
that pays exactly what its writers alone would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..results import Stats


def base_alone_cost(seconds: float, ids: int) -> float | None:
    """c_B: seconds per id of a base-alone run (wall time: it pays for everything it does)."""
    return seconds / ids if ids else None


def nudger_alone_cost(stats: Stats) -> float | None:
    """c_N from a γ > 1 run: its wall time outside base forwards, per id it wrote."""
    return max(0.0, stats.seconds - stats.base_seconds) / stats.output_tokens if stats.output_tokens else None


def columns(stats: Stats, c_base: float | None, c_nudger: float | None) -> dict[str, Any]:
    """One run's cost columns: the ideal cost and overhead (None where a writer's alone-cost is
    missing), forwards per id each model wrote, and where the wall time went."""
    parts = ((stats.base_tokens, c_base), (stats.nudger_tokens, c_nudger))
    ideal = None if any(n and c is None for n, c in parts) else sum(n * c for n, c in parts if n)
    return {
        "seconds": stats.seconds,
        "base_tokens": stats.base_tokens,
        "nudger_tokens": stats.nudger_tokens,
        "base_forwards": stats.base_forwards,
        "nudger_forwards": stats.nudger_forwards,
        "c_base": c_base,
        "c_nudger": c_nudger,
        "ideal_seconds": ideal,
        "overhead": stats.seconds / ideal if ideal else None,
        "base_forwards_per_base_id": stats.base_forwards / stats.base_tokens if stats.base_tokens else None,
        "nudger_forwards_per_nudger_id": stats.nudger_forwards / stats.nudger_tokens if stats.nudger_tokens else None,
        "time_split": {"base": stats.base_seconds, "nudger": stats.nudger_seconds, "other": max(0.0, stats.seconds - stats.base_seconds - stats.nudger_seconds)},
    }


def totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The columns over several runs as ratios of sums (long answers weigh as their time does):
    overhead = Σ wall ÷ Σ ideal over runs whose ideal is known, forwards ÷ ids written."""
    rows = list(rows)
    known = [r for r in rows if r["ideal_seconds"]]

    def per(num: str, den: str) -> float | None:
        d = sum(r[den] for r in rows)
        return sum(r[num] for r in rows) / d if d else None

    return {
        "overhead": sum(r["seconds"] for r in known) / sum(r["ideal_seconds"] for r in known) if known else None,
        "base_forwards_per_base_id": per("base_forwards", "base_tokens"),
        "nudger_forwards_per_nudger_id": per("nudger_forwards", "nudger_tokens"),
        "time_split": {part: sum(r["time_split"][part] for r in rows) for part in ("base", "nudger", "other")},
    }
