"""Speed of every way to decode with the base, in one process: HF `generate`, HF prompt lookup, HF
assisted generation with the nudger as assistant (across tokenizers), our γ = 0 with drafting, nudged
γ 0.4 with and without drafting, and the nudger alone (γ > 1), which prices the nudger's ids.

Per prompt the systems run interleaved (rotating order, so a shared machine's load hits each alike)
after one untimed warm-up. HF systems are forced to the token count of our γ = 0 run (identical text
for greedy in float32), so tokens/s compare like with like; our other runs report their own length.
Ratios are against HF `generate` on the same prompt, in the same dtype (it runs the same weights).
Each of our runs also gets the cost columns of `cost` (overhead against the ideal cost, forwards per
id each model wrote, the time split). Timings are reported, never asserted.
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
from . import cost
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
    "nudger alone": NudgingConfig(gamma=2.0, drafter="off"),
    "nudger alone + drafting": NudgingConfig(gamma=2.0),
}
HF = ("HF generate", "HF prompt lookup", "HF assisted (nudger)")
# The alone-runs that price each system's ids (c_B, c_N): drafted costs for drafting systems.
PRICED_BY = {
    "γ=0 + drafting": ("γ=0 + drafting", None),
    "nudged γ=0.4": ("HF generate", "nudger alone"),
    "nudged γ=0.4 + drafting": ("γ=0 + drafting", "nudger alone + drafting"),
    "nudger alone": (None, "nudger alone"),
    "nudger alone + drafting": (None, "nudger alone + drafting"),
}
COLUMNS = ("system", "tok/s", "× HF generate", "overhead", "nudger fwd / nudger id", "base fwd / base id", "ids / base fwd", "draft acceptance", "nudge share", "time base/nudger/other s")


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


def _alone_costs(row: dict[str, Any], stats: dict[str, Any]) -> dict[str, float | None]:
    """Per-id costs of this prompt's alone-runs, keyed by the system that measured them."""
    costs: dict[str, float | None] = {name: cost.nudger_alone_cost(stats[name]) for name in ("nudger alone", "nudger alone + drafting")}
    costs["γ=0 + drafting"] = cost.base_alone_cost(stats["γ=0 + drafting"].seconds, stats["γ=0 + drafting"].output_tokens)
    costs["HF generate"] = cost.base_alone_cost(row["HF generate"]["seconds"], row["HF generate"]["tokens"])
    return costs


def _ours(s: Any) -> dict[str, Any]:
    return {
        "tps": s.output_tokens / s.seconds, "tokens": s.output_tokens,
        "ids_per_base_forward": s.output_tokens / max(1, s.base_forwards),
        "drafted": s.drafted_tokens, "draft_accepted": s.draft_accepted_tokens,
        "acceptance": s.draft_accepted_tokens / s.drafted_tokens if s.drafted_tokens else None,
        "nudge_share": s.nudge_share,
    }


def run(nudger: Nudger, *, prompts: list[str] | None = None, max_new_tokens: int = 128, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every system on every prompt, interleaved; per-system medians and per-prompt rows."""
    prompts = prompts or PROMPTS
    rows: list[dict[str, Any]] = []
    broken: dict[str, str] = {}
    warm = prompts[0]
    nudger.generate(warm, OURS["γ=0 + drafting"], max_new_tokens=16)
    nudger.generate(warm, OURS["nudger alone"], max_new_tokens=16)
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
        stats = {}
        for name in systems[k:] + systems[:k]:
            if name in ours:
                stats[name] = nudger.generate(prompt, ours[name]).stats
                row[name] = _ours(stats[name])
            else:
                try:
                    secs = _hf(nudger, name, ids, n)
                except Exception as exc:  # seen: transformers' universal assisted generation on one prompt
                    if name == "HF generate":  # the reference itself: nothing to compare against
                        raise
                    broken[name] = f"{type(exc).__name__} on prompt {i + 1}: {exc}"[:300]
                    continue
                row[name] = {"tps": n / secs, "tokens": n, "seconds": secs}
        systems = [s for s in systems if s not in broken]
        costs = _alone_costs(row, stats)
        for name in ours:
            b_src, n_src = PRICED_BY[name]
            row[name].update(cost.columns(stats[name], costs.get(b_src), costs.get(n_src)))
        for name in systems:
            row[name]["ratio"] = row[name]["tps"] / row["HF generate"]["tps"] if "HF generate" in row else None
        rows.append(row)
        if progress is not None:
            progress(f"{i + 1}/{len(prompts)}: " + ", ".join(f"{k} ×{row[k]['ratio']:.2f}" for k in systems if row[k].get("ratio")))
    names = [*OURS, *(h for h in HF if h not in broken)]
    for r in rows:  # a system that failed on a later prompt is reported as unavailable, not on a subset
        for name in broken:
            r.pop(name, None)
    summary = {}
    for name in names:
        got = [r[name] for r in rows]
        summary[name] = {"tps": statistics.median(g["tps"] for g in got), "ratio": statistics.median(g["ratio"] for g in got if g["ratio"] is not None)}
        for key in ("ids_per_base_forward", "acceptance", "nudge_share"):
            vals = [g[key] for g in got if g.get(key) is not None]
            if vals:
                summary[name][key] = statistics.mean(vals)
        if name in OURS:
            summary[name].update(cost.totals(got))
    return {
        "machine": machine(nudger),
        "dtype": str(nudger.base.model.dtype).removeprefix("torch."),
        "load_average": os.getloadavg(),
        "base": nudger.base.name, "nudger": nudger.nudger.name, "max_new_tokens": max_new_tokens, "prompts": len(prompts),
        "priced_by": {k: {"c_base": b, "c_nudger": n} for k, (b, n) in PRICED_BY.items()},
        "summary": summary, "rows": rows, "unavailable": broken,
    }


def machine(nudger: Nudger) -> str:
    """CPU model (or GPU), cores, torch, threads and the weights' dtype: what a timing depends on."""
    name = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").is_file():
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), name)
    device = nudger.base.model.device
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    return f"{name}, {os.cpu_count()} cpus, torch {torch.__version__} threads {torch.get_num_threads()}, dtype {str(nudger.base.model.dtype).removeprefix('torch.')}"


def table(report: dict[str, Any]) -> list[list[str]]:
    """The summary as rows of cells under COLUMNS (the CLI's table and compare.md)."""

    def fmt(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    out = []
    for name, s in report["summary"].items():
        split = s.get("time_split")
        out.append([
            name, f"{s['tps']:.1f}", f"×{s['ratio']:.2f}", fmt(s.get("overhead"), ".2f"), fmt(s.get("nudger_forwards_per_nudger_id"), ".2f"),
            fmt(s.get("base_forwards_per_base_id"), ".2f"), fmt(s.get("ids_per_base_forward"), ".2f"), fmt(s.get("acceptance"), ".0%"),
            fmt(s.get("nudge_share"), ".0%"), f"{split['base']:.1f}/{split['nudger']:.1f}/{split['other']:.1f}" if split else "-",
        ])
    return out


def markdown(report: dict[str, Any]) -> str:
    """compare.md: the table with the machine, the load and what the columns mean."""
    lines = [
        f"{report['base']} + {report['nudger']}, {report['prompts']} prompts × {report['max_new_tokens']} new tokens, {report['machine']}, load average {report['load_average'][0]:.1f}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(cells) + " |" for cells in table(report)),
        "",
        "tok/s and × HF generate: medians over prompts. Overhead = wall time ÷ ideal cost (base-written ids × c_B + nudger-written ids × c_N;",
        "c_B, c_N: each model's seconds per id alone on the same prompt, see `priced_by` in compare.json), summed over prompts;",
        "forwards per id, ids counted in the base's view as the nudge share is.",
    ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    """compare.json, compare.md, and compare.png (tokens/s per system; where each nudged run's
    time went against its ideal cost) when matplotlib is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "compare.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out_dir / "compare.md").write_text(markdown(report))
    plt = pyplot()
    if plt is None:
        return json_path, None
    summary = report["summary"]
    names = list(summary)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    tps = [summary[k]["tps"] for k in names]
    ax.bar(range(len(names)), tps, color=["tab:green" if k in OURS else "tab:gray" for k in names])
    for x, k in enumerate(names):
        ax.annotate(f"×{summary[k]['ratio']:.2f}", (x, tps[x]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel("tokens / s (median over prompts)")
    ax.set_title(f"{report['base']} + {report['nudger']}, {report['max_new_tokens']} new tokens, {report['dtype']}", fontsize=8)
    nudged = [k for k in names if k in OURS and summary[k].get("nudge_share") and summary[k]["nudge_share"] < 1]
    left = [0.0] * len(nudged)
    for part, color in (("base", "tab:blue"), ("nudger", "tab:purple"), ("other", "tab:gray")):
        widths = [summary[k]["time_split"][part] for k in nudged]
        bx.barh(range(len(nudged)), widths, left=left, color=color, label=f"{part} forwards" if part != "other" else "other")
        left = [a + b for a, b in zip(left, widths)]
    for y, k in enumerate(nudged):
        if summary[k].get("overhead"):
            ideal = left[y] / summary[k]["overhead"]
            bx.plot([ideal, ideal], [y - 0.4, y + 0.4], color="black")
            bx.annotate(f"overhead ×{summary[k]['overhead']:.2f}", (left[y], y), va="center", fontsize=7)
    bx.set_yticks(range(len(nudged)), nudged, fontsize=7)
    bx.set_xlabel("seconds over all prompts (black line: ideal cost)")
    bx.legend(fontsize=7, loc="lower right")
    return json_path, save_png(plt, fig, out_dir / "compare.png")
