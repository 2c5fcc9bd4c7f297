"""Speed benchmark: nudged decoding against the base model's own greedy `generate`.

Both run in the same process on the same prompts, interleaved A/B per prompt after a warm-up, and
produce the same number of tokens (the base-only run is forced to the nudged run's length), so the
tokens/s ratio compares like with like on a noisy shared machine. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import NudgingConfig
from ..nudger import Nudger

PROMPTS = [
    "Give three tips for better sleep.",
    "What is the capital of France?",
    "Explain photosynthesis to a ten-year-old.",
    "Write a haiku about the sea.",
    "How do I reverse a list in Python?",
    "Name three primary colors and say why they are called primary.",
    "What are the benefits of regular exercise?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
]


@dataclass
class PairTiming:
    prompt: str
    tokens: int
    base_only_tps: float
    nudged_tps: float
    ratio: float
    nudge_share: float
    base_forwards_per_token: float
    nudger_forwards_per_token: float
    base_forwards_per_base_id: float | None  # forwards ÷ ids that model wrote (base-view ids)
    nudger_forwards_per_nudger_id: float | None
    written: tuple[int, int]  # (base-written, nudger-written) ids
    forwards: tuple[int, int]  # (base, nudger) forwards
    speculated_tokens: int
    base_seconds: float
    nudger_seconds: float
    overhead_seconds: float
    stop_reason: str


@dataclass
class BenchReport:
    label: str
    device: str
    gamma: float
    max_new_tokens: int
    config: dict[str, Any]
    pairs: list[PairTiming] = field(default_factory=list)
    peak_memory_mb: float = 0.0
    machine: str = ""

    @property
    def median_ratio(self) -> float:
        return statistics.median(p.ratio for p in self.pairs) if self.pairs else 0.0

    def summary(self) -> dict[str, Any]:
        ps = self.pairs
        return {
            "label": self.label,
            "device": self.device,
            "gamma": self.gamma,
            "median_ratio": self.median_ratio,
            "base_only_tps": statistics.median(p.base_only_tps for p in ps),
            "nudged_tps": statistics.median(p.nudged_tps for p in ps),
            "nudge_share": statistics.mean(p.nudge_share for p in ps),
            "base_forwards_per_token": statistics.mean(p.base_forwards_per_token for p in ps),
            "nudger_forwards_per_token": statistics.mean(p.nudger_forwards_per_token for p in ps),
            "base_forwards_per_base_id": _per(ps, 0),
            "nudger_forwards_per_nudger_id": _per(ps, 1),
            "time_split": {
                "base": sum(p.base_seconds for p in ps),
                "nudger": sum(p.nudger_seconds for p in ps),
                "overhead": sum(p.overhead_seconds for p in ps),
            },
            "peak_memory_mb": self.peak_memory_mb,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), **asdict(self)}


def _per(pairs: list[PairTiming], side: int) -> float | None:
    """One model's forwards per id it wrote, over all prompts (Σ forwards ÷ Σ ids; side 0: base)."""
    ids = sum(p.written[side] for p in pairs)
    return sum(p.forwards[side] for p in pairs) / ids if ids else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def base_only(nudger: Nudger, prompt_ids: list[int], tokens: int) -> float:
    """Seconds for the base model's own greedy generate of exactly `tokens` new tokens."""
    model = nudger.base.model
    x = torch.tensor([prompt_ids], device=model.device)
    _sync(model.device)
    t0 = time.perf_counter()
    model.generate(x, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=nudger.base.tokenizer.pad_token_id)
    _sync(model.device)
    return time.perf_counter() - t0


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(nudger: Nudger, *, prompts: list[str] | None = None, config: NudgingConfig | None = None, label: str = "", warmup: int = 1, progress: Any = None) -> BenchReport:
    """Time base-only and nudged generation on each prompt, interleaved, after `warmup` untimed runs."""
    cfg = config or nudger.config
    prompts = prompts or PROMPTS
    device = nudger.base.device
    report = BenchReport(label or nudger.base.name, str(device), cfg.gamma, cfg.max_new_tokens, {k: v for k, v in asdict(cfg).items() if k != "base_template"})
    report.machine = f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__} threads {torch.get_num_threads()}".strip()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for p in prompts[:warmup]:
        res = nudger.generate(p, cfg)
        base_only(nudger, nudger.base.tokenizer.encode(res.prompts["base"]), max(1, res.stats.output_tokens))
    for p in prompts:
        res = nudger.generate(p, cfg)  # A: nudged
        n = max(1, res.stats.output_tokens)
        secs = base_only(nudger, nudger.base.tokenizer.encode(res.prompts["base"]), n)  # B: base alone, same length
        s = res.stats
        report.pairs.append(
            PairTiming(
                prompt=p,
                tokens=n,
                base_only_tps=n / secs,
                nudged_tps=n / s.seconds,
                ratio=(n / s.seconds) / (n / secs),
                nudge_share=s.nudge_share,
                base_forwards_per_token=s.base_forwards / n,
                nudger_forwards_per_token=s.nudger_forwards / n,
                base_forwards_per_base_id=s.base_forwards / s.base_tokens if s.base_tokens else None,
                nudger_forwards_per_nudger_id=s.nudger_forwards / s.nudger_tokens if s.nudger_tokens else None,
                written=(s.base_tokens, s.nudger_tokens),
                forwards=(s.base_forwards, s.nudger_forwards),
                speculated_tokens=s.speculated_tokens,
                base_seconds=s.base_seconds,
                nudger_seconds=s.nudger_seconds,
                overhead_seconds=max(0.0, s.seconds - s.base_seconds - s.nudger_seconds),
                stop_reason=s.stop_reason,
            )
        )
        if progress is not None:
            progress(report.pairs[-1])
    report.peak_memory_mb = peak_memory_mb(device)
    return report


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(reports: list[BenchReport], out_dir: Path) -> tuple[Path, Path | None]:
    """JSON of every run, and a PNG chart of tokens/s when matplotlib is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "bench.json"
    json_path.write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    plt = pyplot()
    if plt is None:
        return json_path, None
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(reports), 3.6))
    labels = [f"{r.label}\nγ={r.gamma}" for r in reports]
    xs = range(len(reports))
    base = [r.summary()["base_only_tps"] for r in reports]
    nudged = [r.summary()["nudged_tps"] for r in reports]
    ax.bar([x - 0.2 for x in xs], base, 0.4, label="base only (generate)")
    ax.bar([x + 0.2 for x in xs], nudged, 0.4, label="nudged")
    for x, r in zip(xs, reports):
        ax.annotate(f"×{r.median_ratio:.2f}", (x + 0.2, nudged[x]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("tokens / s (median over prompts)")
    ax.legend(fontsize=7)
    return json_path, save_png(plt, fig, out_dir / "bench.png")


# Llama-shaped random models of real sizes, for speed work where real weights cannot travel (e.g. a
# GPU machine without the hub). hidden, intermediate, layers, heads, kv heads.
SHAPES = {
    "8b": (4096, 14336, 32, 32, 8),
    "3b": (3072, 8192, 28, 24, 8),
    "1b": (2048, 8192, 16, 32, 8),
    "135m": (576, 1536, 30, 9, 3),
    "tiny": (64, 128, 2, 4, 2),
}


def random_pair(base_shape: str, nudger_shape: str, tokenizer: Any, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None, head_scale: float = 30.0) -> Nudger:
    """Base and nudger with random weights of the given shapes, sharing `tokenizer` (a chat one).

    The output layer is scaled so top-1 probabilities spread over (0, 1); sweep gamma to set the
    nudge share. Outputs are gibberish: only the speed means anything.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..loading import default_device

    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)

    def build(shape: str, seed: int) -> Any:
        hidden, inter, layers, heads, kv = SHAPES[shape]
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=4096, tie_word_embeddings=False,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        with torch.device(device):
            model = LlamaForCausalLM(config).to(dtype)
        with torch.no_grad():
            model.lm_head.weight.mul_(head_scale)
        return model.eval()

    return Nudger(build(base_shape, 1), tokenizer, build(nudger_shape, 2), tokenizer)
