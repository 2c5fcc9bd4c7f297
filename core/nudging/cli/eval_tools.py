"""`nudging eval-tools`: tool-call and structured-output quality of base, nudger and nudged, with
the grammar on and off (evaluation/tool_use.py); with `--bfcl`, BFCL v4 beside the project's tool
set under "auto" (evaluation/tool_bench.py). Registered in cli/__init__.py."""

from __future__ import annotations

from typing import Annotated

import typer

from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER


def eval_tools_command(
    gamma: Annotated[list[float] | None, typer.Option("--gamma", "-g", help="Gamma(s) of the nudged system (repeatable).")] = None,
    tool_choice: Annotated[str, typer.Option("--tool-choice", help="tool_choice of every tool request: required or auto.")] = "required",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N tool and N structured requests (quick runs).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", "-n", min=1, help="Answer budget, in base-model tokens (default 96; 128 with --bfcl).")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for results.jsonl (the resumable cache) and table.md/.json.")] = "benchmarks/results/tools",
    base: Annotated[str, typer.Option("--base", help="Base model: HF id, local folder, .gguf file or embedded:base.")] = EMBEDDED_BASE,
    nudger: Annotated[str, typer.Option("--nudger", help="Nudger (chat) model: HF id, local folder, .gguf file or embedded:nudger.")] = EMBEDDED_NUDGER,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 or auto; unset: cuda if available, else cpu.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Requests decoded together per system.")] = 8,
    bfcl: Annotated[bool, typer.Option("--bfcl", help="BFCL v4 simple_python (auto and required) and irrelevance (auto), constrained, beside the project's tool set under auto; writes bfcl.jsonl (the cache), bfcl.md/.json/.png. Needs `pip install --no-deps bfcl-eval==2026.3.23`.")] = False,
    base_tokenizer: Annotated[str | None, typer.Option("--base-tokenizer", help="The base's tokenizer, for a base spec that does not name one (a served model).")] = None,
    nudger_tokenizer: Annotated[str | None, typer.Option("--nudger-tokenizer", help="The nudger's tokenizer, likewise.")] = None,
) -> None:
    """Right tool / valid / exact arguments and schema-valid structured output, base vs nudger vs nudged, constrained vs not; cached per item, so reruns resume."""
    from pathlib import Path

    from rich.console import Console

    from ..evaluation import tool_use
    from . import common as cli

    if tool_choice not in ("required", "auto"):
        cli.fail(f"--tool-choice must be required or auto, got {tool_choice!r}")
    if bfcl:
        from ..errors import ConfigError
        from ..evaluation import bfcl as bfcl_data

        try:
            bfcl_data.package_dir()
        except ConfigError as exc:
            cli.fail(str(exc))
    model = cli.load_nudger(base, nudger, device, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
    out = Path(out_dir)
    console = Console()
    if bfcl:
        from ..evaluation import tool_bench

        systems = [s for s in tool_use.tool_systems(gamma or [0.4]) if s.constrained]
        n = max_new_tokens or 128
        rows = tool_bench.aggregate(tool_bench.run_all(model, systems, out, limit=limit, max_new_tokens=n, batch=batch))
        settings = {"base": model.base.name, "nudger": model.nudger.name, "decoding": "greedy", "constrained": True, "parallel_tool_calls": False, "max_new_tokens": n, "limit": limit, "call_threshold": model.config.call_threshold, "call_gamma": model.config.call_gamma, "grounded_calls": model.config.grounded_calls}
        paths = tool_bench.write(rows, out, settings)
        console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, soft_wrap=True)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))
        return
    max_new_tokens = max_new_tokens or 96
    records = tool_use.run_tool_eval(model, tool_use.tool_systems(gamma or [0.4]), out / "results.jsonl", tool_choice=tool_choice, limit=limit, max_new_tokens=max_new_tokens, batch=batch)
    settings = {"base": model.base.name, "nudger": model.nudger.name, "decoding": "greedy", "tool_choice": tool_choice, "parallel_tool_calls": False, "max_new_tokens": max_new_tokens, "limit": limit}
    paths = tool_use.write(tool_use.aggregate(records), out, settings)
    console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
