"""Aggregate cached answers into the system × task table (markdown + JSON) and a bar chart."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from .tasks import PUNKT_NOTE, get_task

_IFEVAL_COLUMNS = ("prompt_strict", "prompt_loose", "inst_strict", "inst_loose")


def _gamma_label(row: dict[str, Any]) -> str:
    if row["gamma"] is not None:
        return format(row["gamma"], "g")
    return "–" if row["system"] == "proxy-tuned" else "learned"


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: honest at small n and near 0 or 1, where the
    normal approximation gives intervals outside [0, 1]."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(better: int, worse: int) -> float:
    """Two-sided exact McNemar p-value: how likely a split at least this uneven of the items on
    which two systems disagree is if neither is better (a binomial test at 1/2)."""
    n = better + worse
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(better, worse) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each nudged-type system against base-only and nudger-only on the items both answered:
    on how many its primary metric is better / worse, and McNemar's p. Same prompts, so this
    sees differences that overlapping confidence intervals hide."""
    scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        scores[r["task"]][r["system"]][r["item_id"]] = r["metrics"][get_task(r["task"]).primary]
    out = []
    for task_name in sorted(scores):
        by_system = scores[task_name]
        for system in sorted(by_system):
            for other in ("base", "nudger"):
                if system in ("base", "nudger") or other not in by_system:
                    continue
                common = by_system[system].keys() & by_system[other].keys()
                better = sum(by_system[system][i] > by_system[other][i] for i in common)
                worse = sum(by_system[system][i] < by_system[other][i] for i in common)
                out.append({"task": task_name, "system": system, "versus": other, "n": len(common), "better": better, "worse": worse, "p": mcnemar(better, worse)})
    return out


def aggregate(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, system): n items, accuracy (with its 95% Wilson interval), IFEval's four
    accuracies, shares, tokens/s.

    Instruction-level IFEval accuracy is micro-averaged (passed ÷ all instructions), as in IFEval;
    tokens/s is total output tokens ÷ total seconds.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["system"])].append(r)
    rows = []
    for (task_name, system), rs in groups.items():
        n = len(rs)
        seconds = sum(r["seconds"] for r in rs)
        row: dict[str, Any] = {
            "task": task_name,
            "system": system,
            "gamma": rs[0]["gamma"],
            "n": n,
            "nudge_share": sum(r["nudge_share"] for r in rs) / n,
            "word_share": sum(r["word_share"] for r in rs) / n,
            "tokens_per_second": sum(r["output_tokens"] for r in rs) / seconds if seconds else 0.0,
        }
        if task_name == "ifeval":
            total = sum(r["metrics"]["inst_total"] for r in rs)
            for level in ("strict", "loose"):
                row[f"prompt_{level}"] = sum(r["metrics"][f"prompt_{level}"] for r in rs) / n
                row[f"inst_{level}"] = sum(r["metrics"][f"inst_{level}"] for r in rs) / total if total else 0.0
        primary = get_task(task_name).primary
        row["accuracy"] = row[primary] if primary in row else sum(r["metrics"][primary] for r in rs) / n
        row["ci_low"], row["ci_high"] = wilson(row["accuracy"] * n, n)
        rows.append(row)
    # nudged-learned (gamma None) goes after the gamma rows, before nudger-only
    rows.sort(key=lambda r: (r["task"], r["gamma"] is not None and r["gamma"] > 1, 1.0 if r["gamma"] is None else r["gamma"]))
    return rows


def markdown(rows: list[dict[str, Any]], settings: dict[str, Any], comparisons: Sequence[dict[str, Any]] = ()) -> str:
    """The table, the paired comparisons, the settings and the notes a reader needs to trust them."""
    head = "| task | system | γ | n | accuracy | 95% CI | IFEval prompt strict / loose | IFEval instr. strict / loose | nudge share | word share | tokens/s |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ifeval = ("{prompt_strict:.3f} / {prompt_loose:.3f}".format(**r), "{inst_strict:.3f} / {inst_loose:.3f}".format(**r)) if r["task"] == "ifeval" else ("", "")
        lines.append(
            f"| {r['task']} | {r['system']} | {_gamma_label(r)} | {r['n']} | {r['accuracy']:.3f} | {r['ci_low']:.3f}–{r['ci_high']:.3f} | {ifeval[0]} | {ifeval[1]} "
            f"| {r['nudge_share']:.3f} | {r['word_share']:.3f} | {r['tokens_per_second']:.1f} |"
        )
    if comparisons:
        lines += ["", "| task | system | vs | n | better | worse | p (McNemar) |", "|" + "---|" * 7]
        lines += [f"| {c['task']} | {c['system']} | {c['versus']} | {c['n']} | {c['better']} | {c['worse']} | {c['p']:.3f} |" for c in comparisons]
    notes = [
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".",
        "Accuracy: IFEval strict prompt-level; GSM8K last number = reference; ARC the option label picked. 95% CI: Wilson interval.",
        "Paired: items on which the system's accuracy metric is better / worse than the other's; p: exact two-sided McNemar test.",
        "Nudge share: answer tokens (base tokenizer) written by the nudger; word share: words whose first character it wrote.",
    ]
    if any(r["task"] == "ifeval" for r in rows):
        notes.append(PUNKT_NOTE)
    return "\n".join(lines + notes) + "\n"


def bar_chart(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy per task, one bar per system; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.6))
    for i, system in enumerate(systems):
        xs, ys, ns = [], [], []
        for j, task in enumerate(tasks):
            for r in rows:
                if r["task"] == task and r["system"] == system:
                    xs.append(j + i * width)
                    ys.append(r["accuracy"])
                    ns.append(r["n"])
        bars = ax.bar(xs, ys, width, label=system)
        ax.bar_label(bars, labels=[f"n={n}" for n in ns], fontsize=7)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(rows: list[dict[str, Any]], out_dir: Path, settings: dict[str, Any], comparisons: Sequence[dict[str, Any]] = ()) -> dict[str, Path]:
    """table.md, table.json and (with matplotlib) table.png in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "table.md", "json": out_dir / "table.json"}
    paths["markdown"].write_text(markdown(rows, settings, comparisons), encoding="utf-8")
    payload = {"settings": settings, "rows": rows, "paired": list(comparisons), "notes": [PUNKT_NOTE] if any(r["task"] == "ifeval" for r in rows) else []}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    png = bar_chart(rows, out_dir / "table.png")
    if png:
        paths["png"] = png
    return paths
