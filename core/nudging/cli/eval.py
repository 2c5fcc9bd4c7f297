"""`nudging eval`: the typer command over `run_eval` (registered in cli/__init__.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ConfigError, NudgingError
from ..evaluation.runner import eval_config
from ..evaluation.tasks import TASKS
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER


def eval_command(
    task: Annotated[list[str] | None, typer.Option("--task", help=f"Task(s) to run (repeatable): {', '.join(TASKS)}.")] = None,
    gamma: Annotated[list[float] | None, typer.Option("--gamma", "-g", help="Gamma(s) of the nudged system (repeatable: a sweep).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N items of each task (quick runs).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", min=1, help="Answer budget, in base-model tokens.")] = 256,
    out_dir: Annotated[str, typer.Option("--out", help="Folder for results.jsonl (the resumable cache) and table.md/.json/.png.")] = "benchmarks/eval",
    base: Annotated[str, typer.Option("--base", help="Base model: HF id, local folder, .gguf file or embedded:base.")] = EMBEDDED_BASE,
    nudger: Annotated[str, typer.Option("--nudger", help="Nudger (chat) model: HF id, local folder, .gguf file or embedded:nudger.")] = EMBEDDED_NUDGER,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 or auto; unset: cuda if available, else cpu.")] = None,
    proxy_base: Annotated[str | None, typer.Option("--proxy-base", help="The nudger's own base model (same vocabulary as both models): adds the paper's proxy-tuning baseline.")] = None,
    paper_compat: Annotated[bool, typer.Option("--paper-compat", help="Also run each gamma with the authors' heuristics (the nudger writes the first word; prefix rule): rows nudged@γ+paper.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Items decoded together per system (same greedy answers, more throughput).")] = 8,
    draft_tokens: Annotated[list[int] | None, typer.Option("--draft-tokens", "-k", min=1, help="Also run each gamma with this draft length K (repeatable): rows nudged@γ,K=k.")] = None,
    base_template: Annotated[str, typer.Option("--base-template", help="The base's prompt format: plain (the paper's Question:/Answer:), chat (User:/Assistant:) or instruct (### Instruction:/### Response:).")] = "plain",
    rescore: Annotated[bool, typer.Option("--rescore", help="First score every cached answer again with the current checkers (after a scorer fix; nothing is regenerated).")] = False,
    policy: Annotated[str | None, typer.Option("--policy", help="Learned policy file (nudging train-policy): adds the system nudged-learned.")] = None,
) -> None:
    """Base-only vs nudger-only vs nudged (and nudged-learned with --policy), greedy, on offline IFEval/GSM8K/ARC; cached per item, so reruns resume."""
    from rich.console import Console

    from ..evaluation import run_eval
    from . import common as cli

    tasks = task or ["ifeval"]
    for name in tasks:
        if name not in TASKS:
            cli.fail(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    try:
        eval_config(max_new_tokens, base_template)  # a bad template fails before the models load
    except ConfigError as exc:
        cli.fail(str(exc))
    learned = None
    if policy is not None:
        from ..policies.learned import LearnedPolicy

        try:
            learned = LearnedPolicy.load(policy)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--policy") from None
    if rescore:
        from pathlib import Path

        from ..evaluation.runner import rescore as rescore_cache

        changed = rescore_cache(Path(out_dir) / "results.jsonl")
        typer.echo(f"rescored the cache: {changed} answers changed their scores", err=True)
    model = cli.load_nudger(base, nudger, device)
    anti = None
    if proxy_base is not None:
        from ..evaluation.proxy_tuning import as_backend, check_vocabulary
        from ..loading import load_model

        try:
            anti = as_backend(*load_model(proxy_base, device_map=device))
            check_vocabulary(model.base, model.nudger, anti)
        except NudgingError as exc:
            cli.fail(str(exc))
    _, paths = run_eval(model, tasks, gammas=gamma or [0.4], limit=limit, max_new_tokens=max_new_tokens, out_dir=out_dir, policy=learned, batch=batch, paper_compat=paper_compat, proxy_base=anti, draft_lengths=draft_tokens or (), base_template=base_template)
    out = Console()
    out.print(paths["markdown"].read_text(encoding="utf-8"), markup=False, soft_wrap=True)
    out.print("wrote " + ", ".join(str(p) for p in paths.values()))
