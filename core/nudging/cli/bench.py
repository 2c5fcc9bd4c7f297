"""`nudging bench`: nudged speed against the base alone, one prompt at a time, in batches, or against HF's
own speed-ups (`--compare`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from ..config import NudgingConfig
from ..errors import NudgingError
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from . import common
from .common import (
    DEFAULTS,
    BaseOpt,
    DeviceOpt,
    MaxNewTokensOpt,
    NudgerOpt,
    _converted,
    app,
    build_config,
    fail,
)


@app.command()
def bench(
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    gamma: Annotated[list[float] | None, typer.Option("--gamma", "-g", help="Threshold(s) to measure (repeatable).")] = None,
    max_new_tokens: MaxNewTokensOpt = 64,
    prompts: Annotated[int, typer.Option("--prompts", min=1, help="How many of the fixed benchmark prompts to run.")] = 8,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 1,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for bench.json and bench.png.")] = "benchmarks/results",
    device: DeviceOpt = None,
    dtype: common.DtypeOpt = "auto",
    base_tokenizer: common.BaseTokenizerOpt = None,
    nudger_tokenizer: common.NudgerTokenizerOpt = None,
    random_pair: Annotated[str | None, typer.Option("--random-pair", help="Random-weight Llama shapes BASE,NUDGER instead of real models, e.g. 8b,1b (speed only).")] = None,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="Tokenizer for --random-pair (a chat tokenizer: HF id, folder or embedded:nudger).")] = EMBEDDED_NUDGER,
    batch: Annotated[str | None, typer.Option("--batch", help="Batch sizes, e.g. 1,4,16: total tokens/s of batched nudging vs the base's batched generate (writes batch.json/png) instead of the one-prompt ratio.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Compare HF generate, HF prompt lookup, HF assisted generation (nudger as assistant), our γ=0 with drafting, nudged γ 0.4 with/without drafting and the nudger alone, on the comparison prompts, with overhead against the ideal cost, forwards per written id and the time split (writes compare.json/md/png).")] = False,
) -> None:
    """Nudged tokens/s against the base model's own greedy generate, same prompts and lengths, interleaved."""
    from pathlib import Path

    from rich.table import Table

    from ..bench import speed as bench_mod

    gammas = gamma or [DEFAULTS.gamma]
    configs = [build_config(gamma=g, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, seed=None, stop=None, system=None) for g in gammas]
    if random_pair:
        from ..loading import load_tokenizer

        shapes = random_pair.split(",")
        if len(shapes) != 2 or not all(x in bench_mod.SHAPES for x in shapes):
            raise typer.BadParameter(f"expected BASE,NUDGER from {sorted(bench_mod.SHAPES)}, got {random_pair!r}", param_hint="--random-pair")
        try:
            model = bench_mod.random_pair(*shapes, load_tokenizer(_converted(tokenizer)), device=device)
        except NudgingError as exc:
            fail(str(exc))
        base, nudger = shapes
    else:
        model = common.load_nudger(base, nudger, device, dtype=dtype, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
    out = Console()
    if batch:
        _bench_batch(model, batch, configs[0], Path(out_dir), out)
        return
    if compare:
        _bench_compare(model, prompts, max_new_tokens, Path(out_dir), out)
        return
    reports = []
    for cfg in configs:
        with out.status(f"γ={cfg.gamma}: timing {prompts} prompts…"):
            reports.append(bench_mod.run(model, prompts=bench_mod.PROMPTS[:prompts], config=cfg, warmup=warmup, label=f"{base} + {nudger}"))
    table = Table(title=f"nudged vs base-only greedy generate ({reports[0].device}, {reports[0].machine})")
    for col in ("γ", "base tok/s", "nudged tok/s", "ratio (median)", "nudge share", "base fwd / base id", "nudger fwd / nudger id", "time base/nudger/other s", "peak MB"):
        table.add_column(col, justify="right")
    for r in reports:
        s = r.summary()
        split = s["time_split"]
        table.add_row(
            f"{r.gamma}", f"{s['base_only_tps']:.1f}", f"{s['nudged_tps']:.1f}", f"×{s['median_ratio']:.2f}", f"{s['nudge_share']:.0%}",
            *("-" if s[k] is None else f"{s[k]:.2f}" for k in ("base_forwards_per_base_id", "nudger_forwards_per_nudger_id")),
            f"{split['base']:.1f}/{split['nudger']:.1f}/{split['overhead']:.1f}", f"{s['peak_memory_mb']:.0f}",
        )
    out.print(table)
    json_path, png_path = bench_mod.write(reports, Path(out_dir))
    out.print(f"wrote {json_path}" + (f" and {png_path}" if png_path else " (install matplotlib for the chart)"))


def _bench_batch(model: Any, sizes: str, cfg: NudgingConfig, out_dir: Any, out: Console) -> None:
    from rich.table import Table

    from ..bench import batch as bench_batch

    try:
        batch_sizes = [int(x) for x in sizes.split(",")]
    except ValueError:
        batch_sizes = []
    if not batch_sizes or min(batch_sizes) < 1:
        raise typer.BadParameter(f"expected batch sizes like 1,4,16, got {sizes!r}", param_hint="--batch")
    with out.status(f"γ={cfg.gamma}: batch sizes {batch_sizes}…"):
        report = bench_batch.run(model, batch_sizes, config=cfg)
    table = Table(title=f"batched nudging vs the base's batched HF generate ({report['device']}, {report['dtype']}, {report['torch_threads']} threads)")
    for col in ("batch", "HF generate tok/s", "nudged tok/s", "× batched HF generate", "nudged vs batch 1", "nudge share"):
        table.add_column(col, justify="right")
    for r in report["rows"]:
        scale = r["nudged_vs_batch1"]
        table.add_row(str(r["batch"]), f"{r['base_only_tps']:.1f}", f"{r['nudged_tps']:.1f}", f"×{r['ratio']:.2f}", "-" if scale is None else f"×{scale:.2f}", f"{r['nudge_share']:.0%}")
    out.print(table)
    json_path, png_path = bench_batch.write(report, out_dir)
    out.print(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))


def _bench_compare(model: Any, prompts: int, max_new_tokens: int, out_dir: Any, out: Console) -> None:
    from rich.table import Table

    from ..bench import compare as bench_compare

    with out.status(f"{prompts} prompts × {max_new_tokens} tokens, every system interleaved…"):
        report = bench_compare.run(model, prompts=bench_compare.PROMPTS[:prompts], max_new_tokens=max_new_tokens, progress=out.print)
    table = Table(title=f"decoding speed, {report['machine']}, load {report['load_average'][0]:.1f}")
    for col in bench_compare.COLUMNS:
        table.add_column(col, justify="right")
    for cells in bench_compare.table(report):
        table.add_row(*cells)
    out.print(table)
    out.print("overhead = wall time ÷ ideal cost (each writer's ids at its own alone-cost per id, c_B and c_N, measured on the same prompts); ids counted in the base's view")
    for name, why in report["unavailable"].items():
        out.print(f"[yellow]{name} unavailable: {why}[/yellow]")
    json_path, png_path = bench_compare.write(report, out_dir)
    out.print(f"wrote {json_path}, {json_path.with_suffix('.md')}" + (f" and {png_path}" if png_path else ""))
