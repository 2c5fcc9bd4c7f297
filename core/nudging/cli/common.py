"""What the commands share: the `app`, option types, config validation, model loading, errors.

Settings are validated by `build_config` before any model is loaded; `load_nudger` is the one place
that loads models (tests replace it with a tiny pair). User errors (bad values, empty prompt,
missing model) exit with code 2 and a one-line message.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from ..config import NudgingConfig
from ..errors import ConfigError, NudgingError
from ..loading import EMBEDDED_BASE, EMBEDDED_NUDGER, convert_gguf, embedded_paths
from ..nudger import Nudger
from ..prompts import Prompt
from ..render import to_text
from ..results import Result

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
BaseOnlyOpt = Annotated[bool, typer.Option("--base-only", help="Let the base model write everything (gamma 0, overrides --gamma), to compare; drafting makes it speculative decoding of the base alone.")]
CompileOpt = Annotated[
    bool | None,
    typer.Option("--compile/--no-compile", help="Static KV caches and compiled forwards (the GPU fast path). Unset: on for CUDA if its startup check passes, off on the CPU."),
]
DtypeOpt = Annotated[
    str,
    typer.Option("--dtype", help="Weights dtype: auto (bfloat16 on CUDA and on CPUs with native bf16, AVX512-BF16 or AMX; float32 elsewhere), float32, bfloat16 or float16. Outputs differ between dtypes: float32 for token-exact results."),
]
BaseTokenizerOpt = Annotated[
    str | None,
    typer.Option("--base-tokenizer", help="The base's tokenizer (HF id, folder, .gguf file or embedded:base) when the base spec does not name one, e.g. a base on vLLM served under a short name: --base http://host:8000/v1#gemma-3-270m. Default: the base's own."),
]
NudgerTokenizerOpt = Annotated[
    str | None,
    typer.Option("--nudger-tokenizer", help="The nudger's tokenizer, as --base-tokenizer is the base's (for a nudger behind a server). Default: the nudger's own."),
]
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
            from ..policies.learned import LearnedPolicy

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


def load_pair(
    base: str,
    nudger: str,
    device: str | None = None,
    *,
    console: Console | None = None,
    compile: bool | None = None,
    dtype: str = "auto",
    base_tokenizer: str | None = None,
    nudger_tokenizer: str | None = None,
) -> Nudger:
    """Load the model pair with a spinner; raises ModelLoadError for a missing model or package.

    GGUF files (and the embedded pair) are converted before the spinner starts: the first
    conversion of a file takes ~1 min and reports its own progress, which a spinner would garble.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the spinner says it; per-file bars would interleave with it
    specs = [_converted(spec) for spec in (base, nudger)]
    tokenizers = [None if tok is None else _converted(tok) for tok in (base_tokenizer, nudger_tokenizer)]
    with (console or Console(stderr=True)).status(f"Loading {base} (base) and {nudger} (nudger)…"):
        return Nudger.from_pretrained(*specs, base_tokenizer=tokenizers[0], nudger_tokenizer=tokenizers[1], device_map=device, compile=compile, dtype=dtype)


def _converted(spec: str) -> str:
    """The cached HF folder for a GGUF spec (converting it on first use); other specs unchanged."""
    if spec in (EMBEDDED_BASE, EMBEDDED_NUDGER):
        return str(convert_gguf(embedded_paths()[spec == EMBEDDED_NUDGER]))
    if spec.lower().endswith(".gguf"):
        return str(convert_gguf(spec))
    return spec


def load_nudger(
    base: str,
    nudger: str,
    device: str | None,
    compile: bool | None = None,
    dtype: str = "auto",
    *,
    base_tokenizer: str | None = None,
    nudger_tokenizer: str | None = None,
) -> Nudger:
    """The commands' model loader (tests replace it): `load_pair`, with load errors as user errors."""
    try:
        return load_pair(base, nudger, device, compile=compile, dtype=dtype, base_tokenizer=base_tokenizer, nudger_tokenizer=nudger_tokenizer)
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
