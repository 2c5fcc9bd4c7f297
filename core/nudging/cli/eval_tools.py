"""`nudging eval-tools`: tool-call and structured-output quality of base, nudger and nudged, with
the grammar on and off (evaluation/tool_use.py; registered in cli/__init__.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER


def eval_tools_command(
    gamma: Annotated[list[float] | None, typer.Option("--gamma", "-g", help="Gamma(s) of the nudged system (repeatable).")] = None,
    tool_choice: Annotated[str, typer.Option("--tool-choice", help="tool_choice of every tool request: required or auto.")] = "required",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N tool and N structured requests (quick runs).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1, help="Answer budget, in base-model tokens.")] = 96,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for results.jsonl (the resumable cache) and table.md/.json.")] = "benchmarks/results/tools",
    base: Annotated[str, typer.Option("--base", help="Base model: HF id, local folder, .gguf file or embedded:base.")] = EMBEDDED_BASE,
    nudger: Annotated[str, typer.Option("--nudger", help="Nudger (chat) model: HF id, local folder, .gguf file or embedded:nudger.")] = EMBEDDED_NUDGER,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 or auto; unset: cuda if available, else cpu.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Requests decoded together per system.")] = 8,
) -> None:
    """Right tool / valid / exact arguments and schema-valid structured output, base vs nudger vs nudged, constrained vs not; cached per item, so reruns resume."""
    from pathlib import Path

    from rich.console import Console

    from ..evaluation import tool_use
    from . import common as cli

    if tool_choice not in ("required", "auto"):
        cli.fail(f"--tool-choice must be required or auto, got {tool_choice!r}")
    model = cli.load_nudger(base, nudger, device)
    out = Path(out_dir)
    records = tool_use.run_tool_eval(model, tool_use.tool_systems(gamma or [0.4]), out / "results.jsonl", tool_choice=tool_choice, limit=limit, max_new_tokens=max_new_tokens, batch=batch)
    settings = {"base": model.base.name, "nudger": model.nudger.name, "decoding": "greedy", "tool_choice": tool_choice, "parallel_tool_calls": False, "max_new_tokens": max_new_tokens, "limit": limit}
    paths = tool_use.write(tool_use.aggregate(records), out, settings)
    console = Console()
    console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
