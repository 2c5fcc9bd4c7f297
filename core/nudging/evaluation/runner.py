"""Run systems × tasks and cache every answer, so an interrupted evaluation resumes where it stopped.

The cache is one JSONL file: one line per (system, task, item id, settings fingerprint), appended
and flushed as soon as the answer is scored. Items are visited in order, a batch at a time, and every
system answers a batch of items before the next starts, so a partial run still compares systems on
the same prompts. Greedy batched answers equal one-at-a-time ones (DESIGN.md invariant 3).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from ..config import BaseTemplate, NudgingConfig
from ..errors import ConfigError
from ..nudger import Nudger
from ..policies.learned import LearnedPolicy
from .proxy_tuning import proxy_generate
from .tasks import Task, ensure_punkt, get_task

BASE_ONLY, NUDGER_ONLY = 0.0, 2.0  # gamma 0: the base writes everything; gamma > 1: the nudger does


@dataclass(frozen=True)
class System:
    """One way to answer: the pair decoded at one gamma, or with a learned policy (gamma None)."""

    name: str
    gamma: float | None
    policy: LearnedPolicy | None = None
    paper_compat: bool = False  # the authors' two heuristics (first word, prefix rule)
    anti: Any = None  # proxy-tuning: the chat model's own base (LocalModel), the anti-expert
    draft_tokens: int | None = None  # K of this system's nudge rounds (None: the run's config)

    def config(self, base: NudgingConfig) -> NudgingConfig:
        """The run's settings as this system decodes them (its gamma and policy are passed apart)."""
        return base.merged(paper_compat=self.paper_compat, draft_tokens=self.draft_tokens)


LEARNED = "nudged-learned"

# The base's plain-text prompt formats the investigation compares: the paper's (default), a chat-like
# one and an Alpaca-style instruction one. Each stops where the base would start the next turn.
BASE_TEMPLATES = {
    "plain": BaseTemplate(),
    "chat": BaseTemplate("User: ", "Assistant: "),
    "instruct": BaseTemplate("### Instruction:\n", "### Response:\n", "\n\n"),
}


def eval_config(max_new_tokens: int, template: str = "plain") -> NudgingConfig:
    """Greedy decoding with `template` for the base, stopping at the base's next question."""
    if template not in BASE_TEMPLATES:
        raise ConfigError(f"unknown base template {template!r}; choose from {', '.join(BASE_TEMPLATES)}")
    base_template = BASE_TEMPLATES[template]
    stop = "\n" + base_template.question_prefix.strip()
    return NudgingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=(stop,), base_template=base_template)


PROXY = "proxy-tuned"


def systems_for(gammas: Sequence[float], policy: LearnedPolicy | None = None, paper_compat: bool = False, anti: Any = None, draft_lengths: Sequence[int] = ()) -> list[System]:
    """base-only, nudger-only and one nudged system per gamma (the paper's three columns), plus
    "nudged@γ+paper" per gamma with `paper_compat`, "nudged@γ,K=k" per gamma and draft length k,
    "nudged-learned" with a learned policy, and "proxy-tuned" (the paper's baseline) given the
    nudger's own base model as `anti`."""
    systems = [System("base", BASE_ONLY), System("nudger", NUDGER_ONLY)] + [System(f"nudged@{g:g}", g) for g in gammas]
    if paper_compat:
        systems += [System(f"nudged@{g:g}+paper", g, paper_compat=True) for g in gammas]
    systems += [System(f"nudged@{g:g},K={k}", g, draft_tokens=k) for g in gammas for k in draft_lengths]
    systems += [System(LEARNED, None, policy)] if policy is not None else []
    return systems + ([System(PROXY, None, anti=anti)] if anti is not None else [])


def for_system(config: NudgingConfig, gamma: float) -> NudgingConfig:
    """A system's config: the base alone (gamma 0) makes no call-or-text decision, so its answers
    neither use nor key on the decision's settings."""
    return replace(config, call_threshold=None, grounded_calls=False) if gamma == 0 else config


def fingerprint(nudger: Nudger, config: NudgingConfig, policy: LearnedPolicy | None = None, anti: Any = None) -> str:
    """Identifies the settings an answer was made with (pair, budget, decoding), not the gamma;
    a learned policy adds its content hash (answers of the gamma systems keep their fingerprint)."""
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
    if config.base_template != BaseTemplate():  # the paper's template keeps the keys answers were cached under
        keys["base_template"] = vars(config.base_template)
    if dtypes := weight_dtypes(nudger):  # float32 answers keep the keys they were cached under
        keys["dtype"] = dtypes
    if config.call_threshold is not None and config.tools and config.tool_choice in (None, "auto"):  # answers without one keep their keys
        keys["call_threshold"] = config.call_threshold
    if config.call_gamma is not None and config.tools:
        keys["call_gamma"] = config.call_gamma
    if config.grounded_calls and config.tools and config.tool_choice in (None, "auto"):
        keys["grounded_calls"] = True
    if policy is not None:
        keys["policy"] = policy.digest
    if anti is not None:
        keys["proxy_anti_expert"] = anti.name
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def weight_dtypes(nudger: Nudger) -> dict[str, str]:
    """Each local model's weights dtype where it is not float32 (a remote model's is the server's):
    bf16 answers differ from float32 ones, so they must not share cache entries."""
    out = {}
    for side, lm in (("base", nudger.base), ("nudger", nudger.nudger)):
        dtype = getattr(getattr(lm, "model", None), "dtype", None)
        if dtype is not None and str(dtype) != "torch.float32":
            out[side] = str(dtype).removeprefix("torch.")
    return out


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


def _chunks(todo: list[tuple[Task, Any, System]], batch: int) -> Iterable[list[tuple[Task, Any, System]]]:
    """Consecutive items, `batch` at a time (every system answers a chunk before the next starts)."""
    chunk: list[tuple[Task, Any, System]] = []
    items: set[tuple[str, str]] = set()
    for entry in todo:
        key = (entry[0].name, entry[1].id)
        if key not in items and len(items) == batch:
            yield chunk
            chunk, items = [], set()
        chunk.append(entry)
        items.add(key)
    if chunk:
        yield chunk


def _by_task_and_system(chunk: list[tuple[Task, Any, System]]) -> list[tuple[tuple[Task, System], list]]:
    groups: dict[tuple[str, str], tuple[tuple[Task, System], list]] = {}
    for task, item, system in chunk:
        groups.setdefault((task.name, system.name), ((task, system), []))[1].append(item)
    return list(groups.values())


def _record(task: Task, item: Any, system: System, fp: str, res: Any) -> dict[str, Any]:
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
        "seconds": s.seconds,  # the row's wall time (shared with its batch)
        "stop_reason": s.stop_reason,
        "text": res.text,
    }
    if system.policy is not None:
        record["policy"] = system.policy.digest
    return record


def rescore(results: Path, progress: bool = True) -> int:
    """Score every cached answer again with the current checkers, without generating anything:
    after a scorer fix the cache stays valid. Rewrites the file in one replace (an interruption
    leaves the old file); returns how many records changed."""
    results = Path(results)
    records = read_cache(results)
    items = {name: {i.id: i for i in get_task(name).load()} for name in {r["task"] for r in records}}
    if "ifeval" in items:
        ensure_punkt(results.parent / ".cache")
    changed = 0
    for r in tqdm(records, disable=not progress, desc="rescore"):
        metrics = get_task(r["task"]).score(items[r["task"]][r["item_id"]], r["text"])
        if metrics != r["metrics"]:
            r["metrics"], changed = metrics, changed + 1
    tmp = results.with_name(results.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.replace(results)
    return changed


def run(
    nudger: Nudger,
    task_names: Iterable[str],
    systems: Sequence[System],
    results: Path,
    *,
    config: NudgingConfig | None = None,
    limit: int | None = None,
    progress: bool = True,
    batch: int = 8,
) -> list[dict[str, Any]]:
    """Answer the first `limit` items of each task with each system, `batch` items decoded together;
    returns this run's records (cached and new). Greedy decoding unless `config` says otherwise."""
    config = config or eval_config(256)
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    fps = {system.name: fingerprint(nudger, system.config(config), system.policy, system.anti) for system in systems}
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
        if (system.name, task.name, item.id, fps[system.name]) not in cached
    ]
    if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("ab") as f:  # a line cut off by an interrupted write: start a fresh one
            f.write(b"\n")
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with results.open("a", encoding="utf-8") as f, tqdm(total=len(todo), disable=not progress, desc="eval") as bar:
        for chunk in _chunks(todo, batch):
            for (task, system), group in _by_task_and_system(chunk):
                bar.set_postfix_str(f"{task.name} {system.name} #{group[0].id}..#{group[-1].id}")
                prompts, cfg = [item.prompt for item in group], system.config(config)
                if system.anti is not None:
                    answers = [proxy_generate(nudger, system.anti, prompt, cfg, system=task.system) for prompt in prompts]
                else:
                    answers = nudger.generate_batch(prompts, cfg, gamma=system.gamma, system=task.system, policy=system.policy)
                for item, res in zip(group, answers):
                    record = _record(task, item, system, fps[system.name], res)
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    f.flush()
                    out[_key(record)] = record
                    bar.update()
    wanted = {(sy.name, t.name, i.id, fps[sy.name]) for t, items in tasks for i in items for sy in systems}
    return [r for k, r in {**cached, **out}.items() if k in wanted]
