"""The `nudging` command line: `generate` one answer, `chat` in a loop.

Each command is a small function on `app`; options shared between commands are the `*Opt` aliases
below, settings are validated by `build_config` before any model is loaded, and `load_nudger` is the
one place that loads models (tests replace it with a tiny pair). A new command (serve, eval, bench)
is another `@app.command()` function that reuses these and imports its heavy module inside itself.
User errors (bad values, empty prompt, missing model) exit with code 2 and a one-line message.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from .config import NudgingConfig
from .engine import Nudger, Prompt
from .errors import ConfigError, NudgingError
from .models import EMBEDDED_BASE, EMBEDDED_NUDGER, convert_gguf, embedded_paths
from .render import legend, summary, to_text
from .results import Result

app = typer.Typer(
    name="nudging",
    help="A base model writes; a small chat model nudges it where it is uncertain (NUDGING, ACL 2025).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# -- options shared by commands ----------------------------------------------------------------------
DEFAULTS = NudgingConfig()  # option defaults come from the library's, so --help shows the real ones
GammaOpt = Annotated[
    float,
    typer.Option("--gamma", "-g", help="Nudge when the base's top-1 probability is below gamma. 0: base only; >1: nudger only."),
]
MaxNewTokensOpt = Annotated[int, typer.Option("--max-new-tokens", "-n", help="Answer budget, in base-model tokens.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", "-t", help="Sampling temperature; 0 is greedy.")]
TopPOpt = Annotated[float, typer.Option("--top-p", help="Nucleus sampling threshold, in (0, 1].")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for sampling; the same seed gives the same answer.")]
StopOpt = Annotated[list[str] | None, typer.Option("--stop", help="Stop string (repeatable); it is cut from the answer.")]
SystemOpt = Annotated[str | None, typer.Option("--system", help="System text for both models.")]
BaseOpt = Annotated[str, typer.Option("--base", help="Base model: HF id, local folder, .gguf file or embedded:base.")]
NudgerOpt = Annotated[str, typer.Option("--nudger", help="Nudger (chat) model: HF id, local folder, .gguf file or embedded:nudger.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 or auto (accelerate); unset: cuda if available, else cpu.")]
StreamOpt = Annotated[bool, typer.Option("--stream/--no-stream", help="Print the answer as it is written.")]
BaseOnlyOpt = Annotated[bool, typer.Option("--base-only", help="Let the base model write everything (gamma 0, overrides --gamma), to compare.")]
PolicyOpt = Annotated[str | None, typer.Option("--policy", help="Learned policy file (from `nudging train-policy`): it decides where the nudger writes, instead of --gamma.")]


def fail(message: str) -> NoReturn:
    """A user error: one red line on stderr, exit code 2 (like a bad option), no traceback."""
    Console(stderr=True).print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(2)


def build_config(
    *,
    gamma: float,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    stop: list[str] | None,
    system: str | None,
    base_only: bool = False,
    policy: str | None = None,
) -> NudgingConfig:
    """The generation settings from command-line values, checked before any model is loaded."""
    try:
        learned = None
        if policy is not None and not base_only:
            from .learned_policy import LearnedPolicy

            learned = LearnedPolicy.load(policy)
        return NudgingConfig(
            gamma=0.0 if base_only else gamma,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=tuple(stop or ()),
            system=system,
            policy=learned,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def load_pair(base: str, nudger: str, device: str | None = None, *, console: Console | None = None) -> Nudger:
    """Load the model pair with a spinner; raises ModelLoadError for a missing model or package.

    GGUF files (and the embedded pair) are converted before the spinner starts: the first
    conversion of a file takes ~1 min and reports its own progress, which a spinner would garble.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the spinner says it; per-file bars would interleave with it
    specs = [_converted(spec) for spec in (base, nudger)]
    with (console or Console(stderr=True)).status(f"Loading {base} (base) and {nudger} (nudger)…"):
        return Nudger.from_pretrained(*specs, device_map=device)


def _converted(spec: str) -> str:
    """The cached HF folder for a GGUF spec (converting it on first use); other specs unchanged."""
    if spec in (EMBEDDED_BASE, EMBEDDED_NUDGER):
        return str(convert_gguf(embedded_paths()[spec == EMBEDDED_NUDGER]))
    if spec.lower().endswith(".gguf"):
        return str(convert_gguf(spec))
    return spec


def load_nudger(base: str, nudger: str, device: str | None) -> Nudger:
    """The commands' model loader (tests replace it): `load_pair`, with load errors as user errors."""
    try:
        return load_pair(base, nudger, device)
    except NudgingError as exc:
        fail(str(exc))


def answer(model: Nudger, prompt: Prompt, config: NudgingConfig, *, stream: bool, out: Console) -> Result:
    """Generate and print one answer with the nudger's words coloured; returns the Result."""
    try:
        if not stream:
            result = model.generate(prompt, config)
            out.print(to_text(result), soft_wrap=True)
            return result
        with model.stream(prompt, config) as events:
            for event in events:
                out.print(to_text([event]), end="", soft_wrap=True)
        out.print()
        assert events.result is not None
        return events.result
    except NudgingError as exc:  # e.g. a prompt longer than a model's context window
        fail(str(exc))


# -- commands ------------------------------------------------------------------------------------------
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the Result as JSON (text, spans, stats, prompts) and nothing else.")] = False,
    stream: StreamOpt = True,
    base_only: BaseOnlyOpt = False,
    policy: PolicyOpt = None,
) -> None:
    """Answer one prompt; the nudger's words are coloured, followed by a line of stats."""
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    config = build_config(gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop, system=system, base_only=base_only, policy=policy)
    model = load_nudger(base, nudger, device)
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
    stream: StreamOpt = True,
    base_only: BaseOnlyOpt = False,
    policy: PolicyOpt = None,
) -> None:
    """Multi-turn chat on stdin: each answer sees the whole conversation. /reset forgets it, /exit quits."""
    config = build_config(gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop, system=system, base_only=base_only, policy=policy)
    model = load_nudger(base, nudger, device)
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


@app.command()
def serve(
    base: BaseOpt = EMBEDDED_BASE,
    nudger: NudgerOpt = EMBEDDED_NUDGER,
    gamma: GammaOpt = DEFAULTS.gamma,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 listens on every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port; 0 picks a free one (printed at start).")] = 8000,
    model_name: Annotated[str | None, typer.Option("--model-name", help="The model id clients send and /v1/models lists (default: nudging, or the --plain spec).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Requests that may wait for the engine; more get 503 with Retry-After.")] = 16,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Requests decoded together (continuous batching: new ones join between steps).")] = 8,
    plain: Annotated[str | None, typer.Option("--plain", help="Serve this one model instead, not nudged, with vLLM-style logprobs (a remote base for a nudger). --base/--nudger/--gamma are then ignored.")] = None,
    device: DeviceOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Serve over an OpenAI-compatible HTTP API: /v1/chat/completions and /v1/completions (streaming), /v1/models, /health."""
    from .server import create_app, create_plain_app, run_server

    if plain is not None:
        from .models import load_model

        try:
            model, tokenizer = load_model(_converted(plain), device_map=device)
        except NudgingError as exc:
            fail(str(exc))
        application = create_plain_app(model, tokenizer, model_name or plain, max_queue=max_queue)
    else:
        config = build_config(gamma=gamma, max_new_tokens=DEFAULTS.max_new_tokens, temperature=DEFAULTS.temperature, top_p=DEFAULTS.top_p, seed=None, stop=None, system=None, policy=policy)
        application = create_app(load_nudger(base, nudger, device), config=config, model_name=model_name or "nudging", max_queue=max_queue, max_batch=max_batch)
    run_server(application, host, port)


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
    random_pair: Annotated[str | None, typer.Option("--random-pair", help="Random-weight Llama shapes BASE,NUDGER instead of real models, e.g. 8b,1b (speed only).")] = None,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="Tokenizer for --random-pair (a chat tokenizer: HF id, folder or embedded:nudger).")] = EMBEDDED_NUDGER,
    batch: Annotated[str | None, typer.Option("--batch", help="Batch sizes, e.g. 1,4,16: total tokens/s of batched nudging vs the base's batched generate (writes batch.json/png) instead of the one-prompt ratio.")] = None,
) -> None:
    """Nudged tokens/s against the base model's own greedy generate, same prompts and lengths, interleaved."""
    from pathlib import Path

    from rich.table import Table

    from . import bench as bench_mod

    gammas = gamma or [DEFAULTS.gamma]
    configs = [build_config(gamma=g, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, seed=None, stop=None, system=None) for g in gammas]
    if random_pair:
        from .models import load_tokenizer

        shapes = random_pair.split(",")
        if len(shapes) != 2 or not all(x in bench_mod.SHAPES for x in shapes):
            raise typer.BadParameter(f"expected BASE,NUDGER from {sorted(bench_mod.SHAPES)}, got {random_pair!r}", param_hint="--random-pair")
        try:
            model = bench_mod.random_pair(*shapes, load_tokenizer(_converted(tokenizer)), device=device)
        except NudgingError as exc:
            fail(str(exc))
        base, nudger = shapes
    else:
        model = load_nudger(base, nudger, device)
    out = Console()
    if batch:
        _bench_batch(model, batch, configs[0], Path(out_dir), out)
        return
    reports = []
    for cfg in configs:
        with out.status(f"γ={cfg.gamma}: timing {prompts} prompts…"):
            reports.append(bench_mod.run(model, prompts=bench_mod.PROMPTS[:prompts], config=cfg, warmup=warmup, label=f"{base} + {nudger}"))
    table = Table(title=f"nudged vs base-only greedy generate ({reports[0].device}, {reports[0].machine})")
    for col in ("γ", "base tok/s", "nudged tok/s", "ratio (median)", "nudge share", "base fwd/tok", "nudger fwd/tok", "time base/nudger/other s", "peak MB"):
        table.add_column(col, justify="right")
    for r in reports:
        s = r.summary()
        split = s["time_split"]
        table.add_row(
            f"{r.gamma}", f"{s['base_only_tps']:.1f}", f"{s['nudged_tps']:.1f}", f"×{s['median_ratio']:.2f}", f"{s['nudge_share']:.0%}",
            f"{s['base_forwards_per_token']:.2f}", f"{s['nudger_forwards_per_token']:.2f}",
            f"{split['base']:.1f}/{split['nudger']:.1f}/{split['overhead']:.1f}", f"{s['peak_memory_mb']:.0f}",
        )
    out.print(table)
    json_path, png_path = bench_mod.write(reports, Path(out_dir))
    out.print(f"wrote {json_path}" + (f" and {png_path}" if png_path else " (install matplotlib for the chart)"))


def _bench_batch(model: Any, sizes: str, cfg: NudgingConfig, out_dir: Any, out: Console) -> None:
    from rich.table import Table

    from . import bench_batch

    try:
        batch_sizes = [int(x) for x in sizes.split(",")]
    except ValueError:
        batch_sizes = []
    if not batch_sizes or min(batch_sizes) < 1:
        raise typer.BadParameter(f"expected batch sizes like 1,4,16, got {sizes!r}", param_hint="--batch")
    with out.status(f"γ={cfg.gamma}: batch sizes {batch_sizes}…"):
        report = bench_batch.run(model, batch_sizes, config=cfg)
    table = Table(title=f"batched nudging vs base-only batched generate ({report['device']}, {report['torch_threads']} threads)")
    for col in ("batch", "base tok/s", "nudged tok/s", "ratio", "nudged vs batch 1", "nudge share"):
        table.add_column(col, justify="right")
    for r in report["rows"]:
        scale = r["nudged_vs_batch1"]
        table.add_row(str(r["batch"]), f"{r['base_only_tps']:.1f}", f"{r['nudged_tps']:.1f}", f"×{r['ratio']:.2f}", "-" if scale is None else f"×{scale:.2f}", f"{r['nudge_share']:.0%}")
    out.print(table)
    json_path, png_path = bench_batch.write(report, out_dir)
    out.print(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))


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
    from . import train_policy as tp

    try:
        settings = tp.TrainSettings(seed=seed, limit=limit, max_tokens=max_tokens, init_steps=init_steps, steps=steps, deferral=deferral)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    model = load_nudger(base, nudger, device)
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


from .eval.command import eval_command  # noqa: E402  (registered last: it reuses this module's helpers)

app.command("eval")(eval_command)
