"""Speed of every way to decode with the base, in one process: HF `generate`, HF prompt lookup, HF
assisted generation with the nudger as assistant (across tokenizers), our γ = 0 with drafting, and
nudged γ 0.4 with and without drafting.

Per prompt the systems run interleaved (rotating order, so a shared machine's load hits each alike)
after one untimed warm-up. HF systems are forced to the token count of our γ = 0 run (identical text
for greedy), so tokens/s compare like with like; nudged runs report their own length. Ratios are
against HF `generate` on the same prompt. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import NudgingConfig
from ..nudger import Nudger
from .speed import pyplot, save_png

# Varied instructions that ask for 128+ tokens: lists, explanations, code, a story, a rewrite.
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List ten common kitchen spices and, for each, one dish it is used in.",
    "Explain step by step how to make a cup of tea, for someone who has never made one.",
    "Write a Python function that checks whether a string is a palindrome, and explain how it works.",
    "Describe the water cycle: evaporation, condensation, precipitation and collection.",
    "Give me a packing list for a three-day hiking trip in the mountains, grouped by category.",
    "Compare cats and dogs as pets: their needs, their costs and their temperaments.",
    "Summarize the main causes of the First World War in a few paragraphs.",
]

OURS = {
    "γ=0 + drafting": NudgingConfig(gamma=0.0),
    "nudged γ=0.4": NudgingConfig(gamma=0.4, drafter="off"),
    "nudged γ=0.4 + drafting": NudgingConfig(gamma=0.4),
}
HF = ("HF generate", "HF prompt lookup", "HF assisted (nudger)")


def _hf(nudger: Nudger, name: str, ids: list[int], n: int) -> float:
    """Seconds for one HF system to write exactly n tokens after ids."""
    model = nudger.base.model
    kw: dict[str, Any] = {}
    if name == "HF prompt lookup":
        kw["prompt_lookup_num_tokens"] = 10
    elif name == "HF assisted (nudger)":
        kw.update(assistant_model=nudger.nudger.model, tokenizer=nudger.base.tokenizer, assistant_tokenizer=nudger.nudger.tokenizer)
    x = torch.tensor([ids], device=model.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=nudger.base.tokenizer.pad_token_id, **kw)
    return time.perf_counter() - t0


def run(nudger: Nudger, *, prompts: list[str] | None = None, max_new_tokens: int = 128, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every system on every prompt, interleaved; per-system medians and per-prompt rows."""
    prompts = prompts or PROMPTS
    rows: list[dict[str, Any]] = []
    broken: dict[str, str] = {}
    warm = prompts[0]
    nudger.generate(warm, OURS["γ=0 + drafting"], max_new_tokens=16)
    for name in HF:
        try:
            _hf(nudger, name, nudger.prompt_ids(warm)["base"], 8)
        except Exception as exc:  # e.g. a transformers without universal assisted generation
            broken[name] = f"{type(exc).__name__}: {exc}"[:300]
    for i, prompt in enumerate(prompts):
        ids = nudger.prompt_ids(prompt)["base"]
        ours = {k: c.merged(max_new_tokens=max_new_tokens) for k, c in OURS.items()}
        first = nudger.generate(prompt, ours["γ=0 + drafting"])
        n = max(1, first.stats.output_tokens)
        systems = [*ours, *(h for h in HF if h not in broken)]
        k = i % len(systems)
        row: dict[str, Any] = {"prompt": prompt, "tokens": n}
        for name in systems[k:] + systems[:k]:
            if name in ours:
                s = nudger.generate(prompt, ours[name]).stats
                row[name] = {
                    "tps": s.output_tokens / s.seconds, "tokens": s.output_tokens,
                    "ids_per_base_forward": s.output_tokens / max(1, s.base_forwards),
                    "drafted": s.drafted_tokens, "draft_accepted": s.draft_accepted_tokens,
                    "acceptance": s.draft_accepted_tokens / s.drafted_tokens if s.drafted_tokens else None,
                    "nudge_share": s.nudge_share,
                    "time_split": {"base": s.base_seconds, "nudger": s.nudger_seconds, "other": max(0.0, s.seconds - s.base_seconds - s.nudger_seconds)},
                }
            else:
                row[name] = {"tps": n / _hf(nudger, name, ids, n), "tokens": n}
        for name in systems:
            row[name]["ratio"] = row[name]["tps"] / row["HF generate"]["tps"] if "HF generate" in row else None
        rows.append(row)
        if progress is not None:
            progress(f"{i + 1}/{len(prompts)}: " + ", ".join(f"{k} ×{row[k]['ratio']:.2f}" for k in systems if row[k].get("ratio")))
    names = [*OURS, *(h for h in HF if h not in broken)]
    summary = {}
    for name in names:
        got = [r[name] for r in rows]
        summary[name] = {"tps": statistics.median(g["tps"] for g in got), "ratio": statistics.median(g["ratio"] for g in got if g["ratio"] is not None)}
        for key in ("ids_per_base_forward", "acceptance", "nudge_share"):
            vals = [g[key] for g in got if g.get(key) is not None]
            if vals:
                summary[name][key] = statistics.mean(vals)
        if "time_split" in got[0]:
            summary[name]["time_split"] = {part: sum(g["time_split"][part] for g in got) for part in ("base", "nudger", "other")}
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus, torch {torch.__version__} threads {torch.get_num_threads()}, dtype {nudger.base.model.dtype}",
        "load_average": os.getloadavg(),
        "base": nudger.base.name, "nudger": nudger.nudger.name, "max_new_tokens": max_new_tokens,
        "summary": summary, "rows": rows, "unavailable": broken,
    }


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    """compare.json, and compare.png (median tokens/s per system) when matplotlib is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "compare.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plt = pyplot()
    if plt is None:
        return json_path, None
    names = list(report["summary"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    tps = [report["summary"][k]["tps"] for k in names]
    ax.bar(range(len(names)), tps, color=["tab:green" if k in OURS else "tab:gray" for k in names])
    for x, k in enumerate(names):
        ax.annotate(f"×{report['summary'][k]['ratio']:.2f}", (x, tps[x]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
    ax.set_ylabel("tokens / s (median over prompts)")
    ax.set_title(f"{report['base']} + {report['nudger']}, {report['max_new_tokens']} new tokens", fontsize=8)
    return json_path, save_png(plt, fig, out_dir / "compare.png")
