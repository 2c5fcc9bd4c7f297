"""Offline quality evaluation: base-only vs nudger-only vs nudged on IFEval, GSM8K and ARC.

`run_eval` answers each task's items with each system (cached in a JSONL file, so runs resume) and
writes the system × task table; `nudging eval` is its command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..nudger import Nudger
from ..policies.learned import LearnedPolicy
from . import report, runner
from .runner import System, systems_for
from .tasks import TASKS, Item, Task

__all__ = ["run_eval", "System", "systems_for", "TASKS", "Task", "Item"]


def run_eval(
    nudger: Nudger,
    tasks: Sequence[str] = ("ifeval",),
    *,
    gammas: Sequence[float] = (0.4,),
    limit: int | None = None,
    max_new_tokens: int = 256,
    out_dir: str | Path = "benchmarks/eval",
    progress: bool = True,
    policy: LearnedPolicy | None = None,
    batch: int = 8,
    paper_compat: bool = False,
    proxy_base: Any = None,
    draft_lengths: Sequence[int] = (),
    base_template: str = "plain",
) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Evaluate base-only, nudger-only and nudged (one system per gamma, plus "nudged-learned" with a
    learned `policy` and "nudged@γ,K=k" per `draft_lengths`), greedy, on the first `limit` items of each task; answers go to out_dir/results.jsonl, the table to out_dir/table.*.

    Returns the table rows and the written paths. `base_template` names the base's prompt format
    (runner.BASE_TEMPLATES; default the paper's "Question:/Answer:"); continuations that start the
    template's next question are cut, for every system alike.
    """
    out_dir = Path(out_dir)
    config = runner.eval_config(max_new_tokens, base_template)
    records = runner.run(
        nudger, tasks, systems_for(gammas, policy, paper_compat, proxy_base, draft_lengths), out_dir / "results.jsonl", config=config, limit=limit, progress=progress, batch=batch
    )
    rows = report.aggregate(records)
    settings = {
        "base": nudger.base.name,
        "nudger": nudger.nudger.name,
        "decoding": "greedy",
        "max_new_tokens": max_new_tokens,
        "limit": limit,
        "base_template": base_template,
        "stop": repr(config.stop[0]),
    }
    if policy is not None:
        settings["learned_policy"] = f"{policy.digest} (eta {policy.eta:.4g})"
    return rows, report.write(rows, out_dir, settings, report.paired(records))
