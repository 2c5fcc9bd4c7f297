"""Batch throughput: batched nudging against the base model's own batched greedy `generate`.

For each batch size both run on the same prompts (the fixed benchmark prompts, cycled), interleaved
after a warm-up. Base-only rows are forced to `max_new_tokens` each; nudged rows end when they end
(EOS, stop, budget), and a batch takes as long as its longest row. Throughput is total answer
tokens / wall seconds, so a nudged batch that loses rows early is not flattered.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import NudgingConfig
from ..nudger import Nudger
from .speed import PROMPTS, _sync, peak_memory_mb, pyplot, save_png


@dataclass
class BatchTiming:
    batch: int
    base_only_tps: float
    nudged_tps: float
    ratio: float
    nudged_tokens: int
    nudge_share: float
    base_forwards: int  # shared base forwards per batch (max over rows: rows share them)
    seconds: float


@torch.inference_mode()
def base_only_batch(nudger: Nudger, prompts_ids: list[list[int]], tokens: int) -> float:
    """Seconds for the base's own batched greedy generate, `tokens` new tokens per row (left padding)."""
    model, tok = nudger.base.model, nudger.base.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(nudger.base.eos_ids)
    width = max(map(len, prompts_ids))
    x = torch.full((len(prompts_ids), width), pad, dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, ids in enumerate(prompts_ids):
        x[r, width - len(ids) :] = torch.tensor(ids)
        mask[r, width - len(ids) :] = 1
    x, mask = x.to(model.device), mask.to(model.device)
    _sync(model.device)
    t0 = time.perf_counter()
    model.generate(x, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=pad)
    _sync(model.device)
    return time.perf_counter() - t0


def run(nudger: Nudger, sizes: list[int], *, config: NudgingConfig | None = None, repeats: int = 2, progress: Any = None) -> dict[str, Any]:
    """Throughput of both at each batch size; medians over `repeats` interleaved pairs."""
    cfg = config or nudger.config
    device = nudger.base.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    nudger.generate_batch(PROMPTS[:2], cfg)  # warm-up
    rows = []
    for b in sizes:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
        ids = [nudger.prompt_ids(p, cfg)["base"] for p in prompts]
        pairs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results = nudger.generate_batch(prompts, cfg)
            nudged_s = time.perf_counter() - t0
            base_s = base_only_batch(nudger, ids, cfg.max_new_tokens)
            n = sum(r.stats.output_tokens for r in results)
            pairs.append((n / nudged_s, b * cfg.max_new_tokens / base_s, n, results, nudged_s))
        nudged_tps = statistics.median(p[0] for p in pairs)
        base_tps = statistics.median(p[1] for p in pairs)
        results = pairs[-1][3]
        out_tokens = sum(r.stats.output_tokens for r in results)
        rows.append(
            BatchTiming(
                batch=b,
                base_only_tps=base_tps,
                nudged_tps=nudged_tps,
                ratio=nudged_tps / base_tps,
                nudged_tokens=out_tokens,
                nudge_share=sum(r.stats.nudger_tokens for r in results) / max(1, out_tokens),
                base_forwards=max(r.stats.base_forwards for r in results),
                seconds=pairs[-1][4],
            )
        )
        if progress is not None:
            progress(rows[-1])
    one = next((r.nudged_tps for r in rows if r.batch == 1), None)
    return {
        "device": str(device),
        "dtype": str(nudger.base.model.dtype).removeprefix("torch."),  # batched generate runs the same weights
        "gamma": cfg.gamma,
        "max_new_tokens": cfg.max_new_tokens,
        "rows": [asdict(r) | {"nudged_vs_batch1": (r.nudged_tps / one) if one else None} for r in rows],
        "peak_memory_mb": peak_memory_mb(device),
        "torch_threads": torch.get_num_threads(),
    }


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path | None]:
    """batch.json, and batch.png (total tokens/s against batch size) when matplotlib is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "batch.json"
    json_path.write_text(json.dumps(report, indent=2))
    plt = pyplot()
    if plt is None:
        return json_path, None
    rows = report["rows"]
    xs = [r["batch"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.plot(xs, [r["base_only_tps"] for r in rows], "o-", label="base only (batched generate)")
    ax.plot(xs, [r["nudged_tps"] for r in rows], "s-", label="nudged (batched)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("batch size")
    ax.set_ylabel("total tokens / s")
    ax.set_title(f"{report['device']}, {report.get('dtype', '')}, γ={report['gamma']}", fontsize=8)
    ax.legend(fontsize=7)
    return json_path, save_png(plt, fig, out_dir / "batch.png")
