"""The learned policy (Co-LLM head on the base's last hidden state) and its trainer, on the tiny pairs.

Training lowers the held-out marginal NLL; a saved head reloads to the same decisions; heads that
always say "base" / "nudger" reproduce gamma = 0 / gamma > 1 through the learned path (invariants
1 and 2); the CLI, the evaluation row and its cache key.

The tiny models are random, so real reference answers carry no signal a head could learn. The
references here are the tiny nudger's own greedy answers to AlpacaEval instructions (as AlpacaEval's
are written by an aligned model): the nudger predicts them far better than the base, which the head
must learn from the base's hidden states and the aligned probabilities.
"""

from __future__ import annotations

import json

import pytest
import torch
from nudging import Nudger, NudgingConfig, cli
from nudging.errors import ConfigError
from nudging.evaluation import run_eval
from nudging.evaluation.runner import LEARNED, fingerprint, read_cache, systems_for
from nudging.policies.learned import LearnedPolicy
from nudging.policies.training import (
    DEFAULT_SYSTEM,
    Positions,
    Reference,
    TrainSettings,
    align,
    collect_features,
    held_out_nll,
    load_references,
    train_policy,
)
from tiny_models import tiny_pair
from typer.testing import CliRunner

N_TRAIN, N_HELD, TOKENS = 16, 6, 20
PROMPTS = ["Give three tips for sleep.", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain rain to a child."}]]


def nudger_written(pair: Nudger, n: int, start: int = 0) -> list[Reference]:
    """References: the nudger's greedy answers to AlpacaEval instructions."""
    refs = load_references("alpaca_eval")[start : start + n]
    return [Reference(r.id, r.instruction, pair.generate(r.instruction, gamma=2.0, max_new_tokens=TOKENS, system=DEFAULT_SYSTEM).text) for r in refs]


def write_jsonl(path, refs: list[Reference]) -> str:
    path.write_text("".join(json.dumps({"instruction": r.instruction, "output": r.output}) + "\n" for r in refs))
    return str(path)


@pytest.fixture(scope="module")
def trained(pair, tmp_path_factory):
    """(pair, policy trained on N_TRAIN references, its file, held-out positions)."""
    refs = nudger_written(pair, N_TRAIN + N_HELD)
    root = tmp_path_factory.mktemp("policy")
    data = write_jsonl(root / "train.jsonl", refs[:N_TRAIN])
    path = root / "head.safetensors"
    policy = train_policy(pair, data, path, TrainSettings(max_tokens=TOKENS, val_fraction=0.25), features_root=root / "features", progress=False)
    held = collect_features(pair, refs[N_TRAIN:], NudgingConfig(system=DEFAULT_SYSTEM), TOKENS, root / "held", progress=False)
    return pair, policy, path, Positions.of(held)


def test_training_lowers_held_out_nll(trained):
    pair, policy, _, held = trained
    untrained = held_out_nll(torch.zeros(len(held)), held)  # sigma(0) = 0.5: a coin per token
    after = held_out_nll(policy.nudge_logit(held.hidden), held)
    assert after < untrained - 0.2, (untrained, after)  # measured: 0.47 (same), 0.49 (cross)
    assert held.aligned.float().mean() > 0.5  # most positions carry both probabilities
    meta = policy.metadata
    assert meta["val_nll"]["trained"] < meta["val_nll"]["untrained"]
    assert meta["n_examples"] == {"train": 12, "val": 4} and meta["base"] == pair.base.name
    assert abs(meta["deferral_rate"] - meta["deferral_target"]) < 0.05


def test_training_is_deterministic(trained, tmp_path):
    pair, policy, path, _ = trained
    again = train_policy(pair, str(path.parent / "train.jsonl"), tmp_path / "again.safetensors", TrainSettings(max_tokens=TOKENS, val_fraction=0.25), features_root=path.parent / "features", progress=False)
    assert again.digest == policy.digest and again.metadata == policy.metadata


def test_saved_head_reloads_to_identical_decisions(trained):
    _, policy, path, held = trained
    loaded = LearnedPolicy.load(path)
    assert torch.equal(loaded.head, policy.head) and loaded.bias == policy.bias and loaded.eta == policy.eta
    assert loaded.metadata == policy.metadata and loaded.digest == policy.digest
    decisions = policy.confident(None, held.hidden)
    assert torch.equal(loaded.confident(None, held.hidden), decisions)
    assert decisions.any() and not decisions.all()  # a mixed verdict, so equality means something
    assert f"hidden_size={held.hidden.shape[1]}" in repr(loaded) and "eta=" in repr(loaded)


def test_policy_errors(tmp_path):
    policy = LearnedPolicy(torch.zeros(8), 0.0, 0.5, {"base": "tiny-base"})
    with pytest.raises(ConfigError, match=r"hidden size 8 .* size 6.*tiny-base"):
        policy.confident(None, torch.zeros(2, 6))
    with pytest.raises(ConfigError, match="hidden states"):
        policy.confident(torch.zeros(2, 10))
    with pytest.raises(ConfigError, match="eta"):
        LearnedPolicy(torch.zeros(8), 0.0, 1.5)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="not a learned policy"):
        LearnedPolicy.load(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="no learned policy file"):
        LearnedPolicy.load(tmp_path / "missing.safetensors")


def test_align_by_character_offsets():
    """Base tokens "abc" "de" then a character split over two ids; nudger tokens "ab" "c" "def" "gh"."""
    logp, top = align([3, 5, None, 8], [2, 3, 6, 8], torch.tensor([-1.0, -2.0, -3.0, -4.0]), torch.tensor([True, False, True, False]))
    assert logp[0] == -3.0  # "abc" = "ab" + "c": the chain rule along the nudger's tokens
    assert torch.isnan(logp[1:]).all()  # "de" ends inside "def"; the split character has no clean start
    assert top.tolist() == [True, True, False, False]  # the nudger's top token where one starts at the same character


# -- through the engine (invariants 1 and 2) ------------------------------------------------------------
def constant_head(pair: Nudger, nudge: bool) -> LearnedPolicy:
    """A head whose verdict ignores the hidden state: always the nudger (bias +50) or always the base."""
    return LearnedPolicy(torch.zeros(pair.base.model.config.hidden_size), 50.0 if nudge else -50.0, 0.5)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_always_base_head_is_base_greedy(pair, prompt):
    res = pair.generate(prompt, policy=constant_head(pair, nudge=False), max_new_tokens=30)
    ref = pair.generate(prompt, gamma=0.0, max_new_tokens=30)
    assert (res.text, res.spans) == (ref.text, ref.spans)  # gamma 0 is the base's own greedy generate (invariant 1)
    assert res.stats.nudger_tokens == 0 and res.stats.output_tokens == ref.stats.output_tokens


@pytest.mark.parametrize("prompt", PROMPTS)
def test_always_nudger_head_is_nudger_greedy(pair, prompt):
    res = pair.generate(prompt, policy=constant_head(pair, nudge=True), max_new_tokens=30)
    ref = pair.generate(prompt, gamma=1.5, max_new_tokens=30)
    assert (res.text, res.spans) == (ref.text, ref.spans)  # gamma > 1 is the nudger's own greedy generate (invariant 2)
    assert res.stats.base_tokens == 0 and res.stats.output_tokens == ref.stats.output_tokens


def test_trained_head_mixes_sources(trained):
    pair, policy, _, _ = trained
    res = pair.generate(PROMPTS[0], policy=policy, max_new_tokens=40)
    assert "".join(s.text for s in res.spans) == res.text
    assert 0.0 < res.stats.nudge_share < 1.0, res.stats


# -- CLI and evaluation ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> Nudger:
    return Nudger(*tiny_pair("cross"))


def test_train_policy_command_and_policy_option(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(cli.common, "load_nudger", lambda base, nudger, device, compile=None, dtype="auto", **tokenizers: tiny)
    monkeypatch.setenv("NUDGING_CACHE", str(tmp_path / "cache"))  # the features cache of this run only
    data = write_jsonl(tmp_path / "refs.jsonl", nudger_written(tiny, 6))
    out = tmp_path / "head.safetensors"
    runner = CliRunner()
    res = runner.invoke(cli.app, ["train-policy", "--data", data, "--out", str(out), "--max-tokens", "12", "--limit", "6"])
    assert res.exit_code == 0, res.output
    assert "held-out marginal NLL" in res.output and out.exists()
    policy = LearnedPolicy.load(out)
    assert policy.metadata["n_examples"] == {"train": 5, "val": 1}
    expected = tiny.generate("Tell me a story.", policy=policy, max_new_tokens=10)
    res = runner.invoke(cli.app, ["generate", "Tell me a story.", "--policy", str(out), "-n", "10", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["text"] == expected.text
    bad = runner.invoke(cli.app, ["generate", "Hi", "--policy", str(tmp_path / "nope.safetensors")])
    assert bad.exit_code == 2 and "no learned policy file" in bad.output


def test_eval_learned_row_keeps_gamma_cache(tiny, tmp_path, monkeypatch):
    policy = LearnedPolicy(torch.randn(tiny.base.model.config.hidden_size, generator=torch.Generator().manual_seed(0)), 0.0, 0.5)
    config = NudgingConfig(max_new_tokens=5)
    assert [s.name for s in systems_for([0.4], policy)] == ["base", "nudger", "nudged@0.4", LEARNED]
    assert fingerprint(tiny, config, policy) != fingerprint(tiny, config)
    other = LearnedPolicy(policy.head, 0.0, 0.6)
    assert fingerprint(tiny, config, other) != fingerprint(tiny, config, policy)

    run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=5, out_dir=tmp_path, progress=False)
    calls = []
    generate_batch = tiny.generate_batch
    monkeypatch.setattr(tiny, "generate_batch", lambda prompts, *a, **k: calls.extend([k.get("policy")] * len(prompts)) or generate_batch(prompts, *a, **k))
    rows, paths = run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=5, out_dir=tmp_path, progress=False, policy=policy)
    assert calls == [policy]  # the gamma systems came from the cache; only the learned row ran
    learned = [r for r in read_cache(tmp_path / "results.jsonl") if r["system"] == LEARNED]
    assert len(learned) == 1 and learned[0]["policy"] == policy.digest and learned[0]["gamma"] is None
    assert [r["system"] for r in rows] == ["base", "nudged@0.5", LEARNED, "nudger"]
    assert f"| gsm8k | {LEARNED} | learned | 1 |" in paths["markdown"].read_text()


@pytest.mark.parametrize("nudge", [False, True])
def test_integrations_take_a_policy(pair, nudge):
    from langchain_nudging import ChatNudging
    from llama_index.llms.nudging import NudgingLLM

    head = constant_head(pair, nudge)
    writer = "base_tokens" if nudge else "nudger_tokens"  # the side that must write nothing
    chat = ChatNudging(nudger=pair, policy=head, max_tokens=12)
    assert chat.invoke(PROMPTS[0]).response_metadata["stats"][writer] == 0
    assert chat._identifying_params["policy"] == head.digest
    llm = NudgingLLM(pair, policy=head, max_new_tokens=12)
    assert llm.complete(PROMPTS[0]).additional_kwargs["stats"][writer] == 0
