"""The GPU fast-path benchmark: HF base-only `generate` (eager; static cache + compile) against
nudged decoding (eager dynamic caches; static caches + compiled steps), on random-weight pairs.

One model pair is built per shape pair; both nudged variants share its weights (a StaticModel
wraps the same modules). Every figure is tokens of output per second of wall time, after a
warm-up call of the same shape (compilation happens there, and is timed separately).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backends import LocalModel, StaticModel, self_check
from ..config import NudgingConfig
from ..nudger import Nudger
from .speed import PROMPTS, pyplot, random_pair, save_png

FILLER = "The committee met on Tuesday to review the annual report, the budget and the plans for next year. "


@dataclass
class Row:
    pair: str
    method: str  # hf-eager | hf-static-compile | nudged-eager | nudged-compiled
    batch: int
    gamma: float | None
    tokens_per_s: float
    nudge_share: float | None
    warmup_s: float
    peak_gb: float
    weights_gb: float
    cache_gb: float


@dataclass
class Bench:
    device: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def prompts(n: int, prompt_tokens: int, tokenizer: Any) -> list[str]:
    """n questions, each after filler text of about `prompt_tokens` tokens (a realistic cache length)."""
    per = max(1, len(tokenizer.encode(FILLER)))
    context = FILLER * max(0, prompt_tokens // per)
    return [context + PROMPTS[i % len(PROMPTS)] for i in range(n)]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(dev: torch.device, fn: Callable[[], int]) -> tuple[float, float]:
    """(warm-up seconds, tokens/s of a second call); peak memory counts from the warm-up on."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    t1 = time.perf_counter()
    tokens = fn()
    _sync(dev)
    return t1 - t0, tokens / (time.perf_counter() - t1)


def _gb(tensors: Any) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**30


def _peak(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0


@torch.inference_mode()
def hf_generate(model: Any, tokenizer: Any, texts: list[str], tokens: int, static: bool) -> int:
    """Base-only greedy `generate` of exactly `tokens` per row; static=True is HF's static cache
    (which transformers compiles on CUDA by itself). Returns the tokens produced."""
    tokenizer.padding_side = "left"
    x = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    kw: dict[str, Any] = {"cache_implementation": "static"} if static else {}
    model.generate(**x, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id, **kw)
    return tokens * len(texts)


def nudged(nudger: Nudger, texts: list[str], cfg: NudgingConfig, shares: list[float]) -> int:
    """Nudged greedy answers (one at a time for one text, else batched); returns output tokens."""
    results = [nudger.generate(texts[0], cfg)] if len(texts) == 1 else nudger.generate_batch(texts, cfg)
    shares.append(sum(r.stats.nudge_share for r in results) / len(results))
    return sum(r.stats.output_tokens for r in results)


def compiled_pair(pair: Nudger, compile: bool = True) -> Nudger:
    """The same weights behind static caches and compiled steps (checked against the dynamic path);
    compile=False keeps the bucketed static path eager (the CPU smoke run: compiling takes minutes there)."""
    sides = []
    for lm in (pair.base, pair.nudger):
        fast = StaticModel(lm.model, lm.tokenizer, compile=compile, buckets=True)
        reason = self_check(fast)
        if reason is not None:
            raise RuntimeError(f"compiled path failed its self-check: {reason}")
        sides.append(fast)
    return Nudger(sides[0], None, sides[1], None)


def run_pair(bench: Bench, label: str, pair: Nudger, *, gammas: list[float], batches: list[int], tokens: int, prompt_tokens: int, log: Callable[[Row], None], compile: bool = True) -> None:
    dev = pair.base.device
    model, tok = pair.base.model, pair.base.tokenizer
    weights = _gb(list(model.parameters()) + list(pair.nudger.model.parameters()))
    fast = compiled_pair(pair, compile)
    plain = Nudger(LocalModel(model, tok), None, LocalModel(pair.nudger.model, pair.nudger.tokenizer), None)

    def add(method: str, batch: int, gamma: float | None, warm: float, tps: float, share: float | None, cache: float) -> None:
        bench.rows.append(Row(label, method, batch, gamma, tps, share, warm, _peak(dev), weights, cache))
        log(bench.rows[-1])

    for b in batches:
        texts = prompts(b, prompt_tokens, tok)
        for method, static in (("hf-eager", False), ("hf-static-compile", True)):
            warm, tps = _timed(dev, lambda t=texts, s=static: hf_generate(model, tok, t, tokens, s))
            add(method, b, None, warm, tps, None, 0.0)
        for g in gammas if b == 1 else gammas[len(gammas) // 2 : len(gammas) // 2 + 1]:
            cfg = NudgingConfig(gamma=g, max_new_tokens=tokens)
            for method, nd in (("nudged-eager", plain), ("nudged-compiled", fast)):
                shares: list[float] = []
                warm, tps = _timed(dev, lambda n=nd, t=texts, c=cfg, sh=shares: nudged(n, t, c, sh))
                cache = _gb(fast.base.keys + fast.base.values + fast.nudger.keys + fast.nudger.values) if nd is fast else 0.0
                add(method, b, g, warm, tps, shares[-1], cache)


def write(bench: Bench, out: Path) -> None:
    """fast.json, and fast.png (tokens/s per method, pair and batch) when matplotlib is installed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "fast.json").write_text(json.dumps({"device": bench.device, "notes": bench.notes, "rows": [r.__dict__ for r in bench.rows]}, indent=2))
    plt = pyplot()
    if plt is None or not bench.rows:
        return
    groups = sorted({(r.pair, r.batch) for r in bench.rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), squeeze=False)
    for ax, (pair, batch) in zip(axes[0], groups):
        rows = [r for r in bench.rows if r.pair == pair and r.batch == batch]
        names = [r.method + ("" if r.gamma is None else f"\nγ={r.gamma} ({100 * (r.nudge_share or 0):.0f}%)") for r in rows]
        ax.bar(range(len(rows)), [r.tokens_per_s for r in rows], color=["#888" if r.method.startswith("hf") else "#c63" for r in rows])
        ax.set_xticks(range(len(rows)), names, fontsize=6, rotation=60, ha="right")
        ax.set_title(f"{pair}, batch {batch}", fontsize=9)
        ax.set_ylabel("output tokens / s")
    save_png(plt, fig, out / "fast.png")


def main(tokenizer: Any, out: Path, *, pairs: list[str], gammas: list[float], batches: list[int], tokens: int, prompt_tokens: int, device: str, dtype: torch.dtype, compile: bool = True) -> Bench:
    import transformers

    where = torch.cuda.get_device_name() if device.startswith("cuda") else device
    bench = Bench(f"{where}, torch {torch.__version__}, transformers {transformers.__version__}")
    if not compile:
        bench.notes.append("nudged-compiled ran the bucketed static path without torch.compile (smoke run)")
    for spec in pairs:
        t0 = time.perf_counter()
        pair = random_pair(*spec.split(","), tokenizer, device=device, dtype=dtype)
        print(f"built {spec} in {time.perf_counter() - t0:.0f} s on {where}", flush=True)
        run_pair(bench, spec, pair, gammas=gammas, batches=batches, tokens=tokens, prompt_tokens=prompt_tokens, log=lambda r: print(json.dumps(r.__dict__), flush=True), compile=compile)
        write(bench, out)
        del pair
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return bench
