"""`nudging eval-tools --bfcl`: BFCL v4 `simple_python` (tool_choice "auto" and "required") and
`irrelevance` ("auto") for base, nudger and nudged, constrained, beside the project's own tool set
under "auto"; answers cached per item in a JSONL file, so runs resume; a table and a bar chart.

Besides BFCL's verdict each answer records who wrote its first token (the decision between a call
and text is made there) and whether its content (the text outside parsed calls) still holds a
`<tool_call>` opener: a call leaked as text, which the "auto" grammar must make impossible.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ..nudger import Nudger
from . import bfcl, report
from .runner import eval_config, fingerprint, for_system, read_cache
from .tool_use import ToolSystem, run_tool_eval

RUNS = (("simple_python", "auto"), ("simple_python", "required"), ("irrelevance", "auto"))
OPENER = "<tool_call>"


def _fingerprint(nudger: Nudger, cfg: Any, item: bfcl.BfclItem) -> str:
    """Settings, the item, and both rendered prompts (a prompt wording change redoes the answer)."""
    ids = nudger.prompt_ids(item.messages, cfg)
    keys = [fingerprint(nudger, cfg), cfg.tool_choice, item.id, item.messages, item.tools, ids["base"], ids["nudger"]]
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def _record(kind: str, system: ToolSystem, choice: str, item: bfcl.BfclItem, fp: str, res: Any) -> dict[str, Any]:
    verdict = bfcl.score(item, res.tool_calls)
    s = res.stats
    return {
        "kind": kind, "system": system.name, "gamma": system.gamma, "tool_choice": choice, "item_id": item.id, "fingerprint": fp,
        "metrics": {"called": verdict["called"], "correct": verdict["correct"]}, "error": verdict["error"],
        "leaked": OPENER in (res.content or ""), "first_source": res.spans[0].source if res.spans else None,
        "text": res.text, "tool_calls": res.tool_calls, "nudge_share": s.nudge_share, "output_tokens": s.output_tokens,
        "mask_seconds": s.mask_seconds, "seconds": s.seconds, "stop_reason": s.stop_reason,
    }


def run_bfcl(nudger: Nudger, systems: Sequence[ToolSystem], results: Path, *, limit: int | None = None, max_new_tokens: int = 128, batch: int = 4, progress: bool = True) -> list[dict[str, Any]]:
    """Answer the first `limit` items of each run in RUNS with each system, greedy, `batch` at a
    time; returns this run's records (cached and new), appending new ones to `results`."""
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    base = eval_config(max_new_tokens).with_tool_settings(nudger.config)
    cached = {(r["kind"], r["system"], r["tool_choice"], r["item_id"], r["fingerprint"]): r for r in read_cache(results)}
    wanted, todo = [], []
    for category, choice in RUNS:
        items = bfcl.load_items(category, limit)
        kind = f"bfcl-{category}"
        for system in systems:
            configs = [for_system(base.merged(tools=item.tools, tool_choice=choice, parallel_tool_calls=False, constrained=system.constrained), system.gamma) for item in items]
            keys = [(kind, system.name, choice, item.id, _fingerprint(nudger, c, item)) for c, item in zip(configs, items)]
            wanted += keys
            left = [i for i, k in enumerate(keys) if k not in cached]
            for start in range(0, len(left), batch):
                todo.append((kind, system, choice, [(items[i], configs[i], keys[i]) for i in left[start:start + batch]]))
    if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("ab") as f:  # a line cut off by an interrupted write: start a fresh one
            f.write(b"\n")
    with results.open("a", encoding="utf-8") as f, tqdm(total=sum(len(t[3]) for t in todo), disable=not progress, desc="bfcl") as bar:
        for kind, system, choice, chunk in todo:
            bar.set_postfix_str(f"{kind} {choice} {system.name}")
            answers = nudger.generate_batch([it.messages for it, _, _ in chunk], [c for _, c, _ in chunk], gamma=system.gamma)
            for (item, _, key), res in zip(chunk, answers):
                record = _record(kind, system, choice, item, key[-1], res)
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                cached[key] = record
                bar.update()
    return [cached[k] for k in wanted]


def run_all(nudger: Nudger, systems: Sequence[ToolSystem], out_dir: Path, *, limit: int | None = None, max_new_tokens: int = 128, batch: int = 4, progress: bool = True) -> list[dict[str, Any]]:
    """BFCL (out_dir/bfcl.jsonl) and the project's tool requests under "auto" (out_dir/results.jsonl,
    the tool evaluation's own cache); the records of both."""
    records = run_bfcl(nudger, systems, out_dir / "bfcl.jsonl", limit=limit, max_new_tokens=max_new_tokens, batch=batch, progress=progress)
    own = run_tool_eval(nudger, systems, out_dir / "results.jsonl", tool_choice="auto", limit=limit, max_new_tokens=max_new_tokens, batch=batch, progress=progress, kinds=("tools",))
    for r in own:
        records.append({**r, "kind": "project set", "tool_choice": "auto", "metrics": {"called": r["metrics"]["called"], "correct": r["metrics"]["exact_arguments"]}})
    return records


def aggregate(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (benchmark, tool_choice, system): n, accuracy (BFCL's verdict; the project set:
    exact arguments), share of answers with a call, answers leaking a call as text, share cut at the
    budget, share whose first token the nudger wrote, mean seconds per answer."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["kind"].removeprefix("bfcl-"), r["tool_choice"], r["system"]), []).append(r)
    rows = []
    for (bench, choice, system), rs in groups.items():
        n = len(rs)
        rows.append({
            "task": f"{bench} ({choice})", "benchmark": bench, "tool_choice": choice, "system": system, "gamma": rs[0]["gamma"], "n": n,
            "accuracy": sum(r["metrics"]["correct"] for r in rs) / n, "called": sum(r["metrics"]["called"] for r in rs) / n,
            "leaked": sum(bool(r.get("leaked")) for r in rs), "cut": sum(r["stop_reason"] == "length" for r in rs) / n,
            "nudger_first": sum(r.get("first_source") == "nudger" for r in rs) / n, "seconds": sum(r["seconds"] for r in rs) / n,
        })
    return rows


def markdown(rows: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The table, and the settings it was made with."""
    lines = ["| benchmark | tool_choice | system | n | accuracy | called | leaked `<tool_call>` as text | cut at budget | nudger wrote 1st token | s/answer |", "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['tool_choice']} | {r['system']} | {r['n']} | {r['accuracy']:.3f} | {r['called']:.3f} | {r['leaked']} "
            f"| {r['cut']:.3f} | {r['nudger_first']:.3f} | {r['seconds']:.1f} |"
        )
    notes = [
        "",
        "Accuracy: BFCL's AST checker on the one call (simple_python), no call at all (irrelevance), exact arguments of the first call (project set).",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
    ]
    return "\n".join(lines + notes) + "\n"


def write(rows: Sequence[dict[str, Any]], out_dir: Path, settings: dict[str, Any]) -> dict[str, Path]:
    """bfcl.md, bfcl.json and (with matplotlib) bfcl.png in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "bfcl.md", "json": out_dir / "bfcl.json"}
    paths["markdown"].write_text(markdown(rows, settings), encoding="utf-8")
    paths["json"].write_text(json.dumps({"settings": settings, "rows": list(rows)}, indent=2) + "\n", encoding="utf-8")
    png = report.bar_chart(list(rows), out_dir / "bfcl.png")
    if png is not None:
        paths["plot"] = png
    return paths
