"""`nudging train-policy`: fit the learned policy head on reference answers."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ..errors import ConfigError, NudgingError
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from . import common
from .common import BaseOpt, DeviceOpt, NudgerOpt, app, fail


@app.command("train-policy")
def train_policy_cmd(
    out: Annotated[str, typer.Option("--out", "-o", help="Where to write the head (.safetensors).")],
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    data: Annotated[str, typer.Option("--data", help="alpaca_eval (805 GPT-4 reference answers, offline) or a .json/.jsonl file of {instruction, output}.")] = "alpaca_eval",
    limit: Annotated[int | None, typer.Option("--limit", min=2, help="Use N examples (a seeded random draw); default: all.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the example draw, the split and the training order.")] = 0,
    steps: Annotated[int, typer.Option("--steps", min=0, help="L-BFGS iterations on the marginal likelihood (full batch).")] = 200,
    init_steps: Annotated[int, typer.Option("--init-steps", min=0, help="L-BFGS iterations of the weak-label (BCE) initialisation.")] = 50,
    deferral: Annotated[float | None, typer.Option("--deferral", min=0.0, max=1.0, help="Share of validation positions to nudge (sets eta); default: the share the default gamma nudges there.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Reference tokens (base tokenizer) used per example.")] = 256,
    device: DeviceOpt = None,
) -> None:
    """Train a learned policy (Co-LLM head on the base's last hidden state) on reference answers; both models stay frozen."""
    from ..policies import training as tp

    try:
        settings = tp.TrainSettings(seed=seed, limit=limit, max_tokens=max_tokens, init_steps=init_steps, steps=steps, deferral=deferral)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    model = common.load_nudger(base, nudger, device)
    try:
        policy = tp.train_policy(model, data, out, settings)
    except NudgingError as exc:
        fail(str(exc))
    m = policy.metadata
    nll = m["val_nll"]
    out_console = Console()
    out_console.print(
        f"{m['n_examples']['train']} train / {m['n_examples']['val']} validation answers, {m['n_positions']['train']} / {m['n_positions']['val']} positions, "
        f"{m['aligned_share']:.0%} with an aligned nudger probability",
        soft_wrap=True,
    )
    out_console.print(
        f"held-out marginal NLL: untrained {nll['untrained']:.4f} → trained {nll['trained']:.4f} "
        f"(base only {nll['base_only']:.4f}, nudger only {nll['nudger_only']:.4f})",
        soft_wrap=True,
    )
    hard = m["val_hard_nll"]
    out_console.print(
        f"eta {policy.eta:.4f}: nudges {m['deferral_rate']:.1%} of validation positions ({m['deferral_source']}); "
        f"NLL of hard choices there: learned {hard['learned']:.4f}, gamma {hard['gamma_value']:.3f} {hard['gamma']:.4f}",
        soft_wrap=True,
    )
    out_console.print(f"wrote {out}")
