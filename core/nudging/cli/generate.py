"""`nudging generate` (one answer) and `nudging chat` (a conversation on stdin)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ..errors import NudgingError
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER
from ..render import legend, summary
from . import common
from .common import (
    DEFAULTS,
    BaseOnlyOpt,
    BaseOpt,
    BaseTokenizerOpt,
    CompileOpt,
    DeviceOpt,
    DtypeOpt,
    GammaOpt,
    MaxNewTokensOpt,
    NudgerOpt,
    NudgerTokenizerOpt,
    PolicyOpt,
    SeedOpt,
    StopOpt,
    StreamOpt,
    SystemOpt,
    TemperatureOpt,
    TopPOpt,
    answer,
    app,
    build_config,
    fail,
)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
    gamma: GammaOpt = DEFAULTS.gamma,
    max_new_tokens: MaxNewTokensOpt = DEFAULTS.max_new_tokens,
    temperature: TemperatureOpt = DEFAULTS.temperature,
    top_p: TopPOpt = DEFAULTS.top_p,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    system: SystemOpt = None,
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    device: DeviceOpt = None,
    compile: CompileOpt = None,
    dtype: DtypeOpt = "auto",
    base_tokenizer: BaseTokenizerOpt = None,
    nudger_tokenizer: NudgerTokenizerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Result as JSON (text, spans, stats, prompts) and nothing else.")] = False,
    stream: StreamOpt = True,
    base_only: BaseOnlyOpt = False,
    policy: PolicyOpt = None,
) -> None:
    """Answer one prompt; the nudger's words are coloured, followed by a line of stats."""
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    config = build_config(gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop, system=system, base_only=base_only, policy=policy)
    model = common.load_nudger(base, nudger, device, compile, dtype, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
    if as_json:
        try:
            result = model.generate(prompt, config)
        except NudgingError as exc:
            fail(str(exc))
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    out = Console()
    result = answer(model, prompt, config, stream=stream, out=out)
    out.print(Text.assemble((summary(result.stats), "dim"), "   ", legend()), soft_wrap=True)


@app.command()
def chat(
    gamma: GammaOpt = DEFAULTS.gamma,
    max_new_tokens: MaxNewTokensOpt = DEFAULTS.max_new_tokens,
    temperature: TemperatureOpt = DEFAULTS.temperature,
    top_p: TopPOpt = DEFAULTS.top_p,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    system: SystemOpt = None,
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    device: DeviceOpt = None,
    compile: CompileOpt = None,
    dtype: DtypeOpt = "auto",
    base_tokenizer: BaseTokenizerOpt = None,
    nudger_tokenizer: NudgerTokenizerOpt = None,
    stream: StreamOpt = True,
    base_only: BaseOnlyOpt = False,
    policy: PolicyOpt = None,
) -> None:
    """Multi-turn chat on stdin: each answer sees the whole conversation. /reset forgets it, /exit quits."""
    config = build_config(gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop, system=system, base_only=base_only, policy=policy)
    model = common.load_nudger(base, nudger, device, compile, dtype, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
    out = Console()
    out.print(Text.assemble(legend(), " · /reset clears the conversation, /exit quits"))
    history: list[dict[str, str]] = []
    while True:
        try:
            line = out.input(Text("you> ", style="bold green")).strip()
        except EOFError:
            break
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            history.clear()
            out.print("(conversation cleared)", style="dim")
            continue
        if line.startswith("/"):
            out.print(f"unknown command {line}: use /reset or /exit", style="yellow")
            continue
        history.append({"role": "user", "content": line})
        try:
            result = answer(model, history, config, stream=stream, out=out)
        except KeyboardInterrupt:  # stop this answer, keep the chat
            history.pop()
            out.print("\n(interrupted)", style="dim")
            continue
        except typer.Exit:  # the error was printed; drop the turn that caused it
            history.pop()
            continue
        history.append({"role": "assistant", "content": result.text})
        out.print(summary(result.stats), style="dim", soft_wrap=True)
