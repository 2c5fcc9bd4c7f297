"""Run systems × tasks and cache every answer, so an interrupted evaluation resumes where it stopped.

The cache is one JSONL file: one line per (system, task, item id, settings fingerprint), appended
and flushed as soon as the answer is scored. Items are visited in order and every system answers an
item before the next item starts, so a partial run still compares systems on the same prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from ..config import NudgingConfig
from ..engine import Nudger
from .tasks import Task, ensure_punkt, get_task

BASE_ONLY, NUDGER_ONLY = 0.0, 2.0  # gamma 0: the base writes everything; gamma > 1: the nudger does


@dataclass(frozen=True)
class System:
    """One way to answer: the pair decoded at one gamma."""

    name: str
    gamma: float


def systems_for(gammas: Sequence[float]) -> list[System]:
    """base-only, nudger-only and one nudged system per gamma (the paper's three columns)."""
    return [System("base", BASE_ONLY), System("nudger", NUDGER_ONLY)] + [System(f"nudged@{g:g}", g) for g in gammas]


def fingerprint(nudger: Nudger, config: NudgingConfig) -> str:
    """Identifies the settings an answer was made with (pair, budget, decoding), not the gamma."""
    keys = {
        "base": nudger.base.name,
        "nudger": nudger.nudger.name,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "seed": config.seed,
        "draft_tokens": config.draft_tokens,
        "paper_compat": config.paper_compat,
        "stop": list(config.stop),
    }
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def read_cache(path: Path) -> list[dict[str, Any]]:
    """All records of a results file; a line cut off by an interrupted write is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _key(record: dict[str, Any]) -> tuple[str, str, str, str]:
    return record["system"], record["task"], record["item_id"], record["fingerprint"]


def run(
    nudger: Nudger,
    task_names: Iterable[str],
    systems: Sequence[System],
    results: Path,
    *,
    config: NudgingConfig | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Answer the first `limit` items of each task with each system; returns this run's records
    (cached and new). Greedy decoding unless `config` says otherwise."""
    config = config or NudgingConfig(temperature=0.0, max_new_tokens=256, stop=("\nQuestion:",))
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(nudger, config)
    cached = {_key(r): r for r in read_cache(results)}
    tasks: list[tuple[Task, list]] = []
    for name in task_names:
        task = get_task(name)
        if name == "ifeval":
            ensure_punkt(results.parent / ".cache")
        tasks.append((task, task.load()[:limit]))
    todo = [
        (task, item, system)
        for task, items in tasks
        for item in items
        for system in systems
        if (system.name, task.name, item.id, fp) not in cached
    ]
    if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("ab") as f:  # a line cut off by an interrupted write: start a fresh one
            f.write(b"\n")
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with results.open("a", encoding="utf-8") as f, tqdm(total=len(todo), disable=not progress, desc="eval") as bar:
        for task, item, system in todo:
            bar.set_postfix_str(f"{task.name} {system.name} #{item.id}")
            res = nudger.generate(item.prompt, config, gamma=system.gamma, system=task.system)
            s = res.stats
            record = {
                "system": system.name,
                "gamma": system.gamma,
                "task": task.name,
                "item_id": item.id,
                "fingerprint": fp,
                "metrics": task.score(item, res.text),
                "nudge_share": s.nudge_share,
                "word_share": s.word_share,
                "output_tokens": s.output_tokens,
                "seconds": s.seconds,
                "stop_reason": s.stop_reason,
                "text": res.text,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            out[_key(record)] = record
            bar.update()
    wanted = {(sy.name, t.name, i.id, fp) for t, items in tasks for i in items for sy in systems}
    return [r for k, r in {**cached, **out}.items() if k in wanted]
