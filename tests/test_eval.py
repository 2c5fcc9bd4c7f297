"""The evaluation harness: offline data, scorers, the resumable cache, the table, the command.

These check the harness, not the scores: generations come from a tiny random pair.
"""

from __future__ import annotations

import json

import pytest
import typer
from nudging import Nudger
from nudging.cli.eval import eval_command
from nudging.evaluation import run_eval
from nudging.evaluation import tasks as T
from nudging.evaluation.runner import read_cache
from tiny_models import tiny_pair
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def tiny() -> Nudger:
    return Nudger(*tiny_pair("cross"))


def test_offline_data_sizes_and_fields():
    assert len(T.load_ifeval()) == 541
    assert len(T.load_gsm8k()) == 1319
    for subset, n in (("arc_easy", 2376), ("arc_challenge", 1172)):
        items = T.load_arc(subset)
        assert len(items) == n and len({i.id for i in items}) == n
        for item in items[:50]:
            assert item.reference["gold"] in item.reference["labels"]
            assert not item.prompt.startswith("Question:") and not item.prompt.endswith("Answer:")


def test_wilson_interval_and_exact_mcnemar():
    from nudging.evaluation.report import mcnemar, paired, wilson

    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)
    assert mcnemar(0, 0) == 1.0 and mcnemar(5, 0) == 2 / 32 and mcnemar(3, 1) == mcnemar(1, 3) == 0.625
    rec = lambda system, item, ok: {"task": "gsm8k", "system": system, "item_id": item, "metrics": {"correct": ok}}  # noqa: E731
    records = [rec("base", "1", 0.0), rec("base", "2", 1.0), rec("nudged@0.4", "1", 1.0), rec("nudged@0.4", "2", 1.0), rec("nudged@0.4", "3", 1.0)]
    assert paired(records) == [{"task": "gsm8k", "system": "nudged@0.4", "versus": "base", "n": 2, "better": 1, "worse": 0, "p": 1.0}]


def test_gsm8k_scoring_takes_the_last_number():
    item = T.Item("0", "q", {"answer": "1234"})
    assert T.score_gsm8k(item, "She had 12 eggs, so 1,234 dollars.")["correct"] == 1.0
    assert T.score_gsm8k(item, "1234 at first, then 12.")["correct"] == 0.0
    assert T.score_gsm8k(item, "no number")["correct"] == 0.0
    assert T.last_number("costs -3.50.") == -3.5


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The answer is (C).", "C"),
        ("A plant needs light, so the answer: B", "B"),
        ("A plant needs light.\n(D) is right", "D"),
        ("Light matters.\nB. Most ecosystems", "B"),
        ("A plant needs light.", None),
    ],
)
def test_arc_answer_label(text, label):
    assert T.answer_label(text, ["A", "B", "C", "D"]) == label


def test_arc_option_text_counts_when_no_letter_is_written():
    item = T.load_arc("arc_challenge")[0]  # options: A. Planetary density will decrease. ... C. Planetary days will become shorter.
    assert item.reference["options"]["C"] == "Planetary days will become shorter."
    assert T.score_arc(item, "1. Planetary days will become shorter, because")["correct"] == 1.0
    assert T.score_arc(item, "1. planetary density will decrease.")["correct"] == 0.0
    assert T.answer_label("1. planetary density will decrease.", item.reference["labels"], item.reference["options"]) == "A"
    listed = "\n".join(item.reference["options"].values())  # restating every option picks none
    assert T.answer_label(listed, item.reference["labels"], item.reference["options"]) is None
    assert T.answer_label("So C. Planetary density will decrease.", item.reference["labels"], item.reference["options"]) == "C"  # a letter wins
    assert all(len(i.reference["options"]) == len(i.reference["labels"]) for i in T.load_arc("arc_easy"))


def test_ifeval_scoring_is_deterministic(tmp_path):
    """Item 1129 asks for the "letter" '!', so IFEval's checker picks a random letter: seeded per item,
    the same answer must score the same every time (it did not, before), and the global RNG is untouched."""
    import random

    T.ensure_punkt(tmp_path)
    item = next(i for i in T.load_ifeval() if i.id == "1129")
    answer = "Sunnis ice cream! " + " ".join("abcdefghijklmnopqrstuvwxyz"[k % 26] * (k % 7) for k in range(40))
    random.seed(1)
    expected = random.random()
    random.seed(1)
    scores = {json.dumps(T.score_ifeval(item, answer)) for _ in range(12)}
    assert len(scores) == 1 and random.random() == expected


def test_rescore_updates_stale_scores_only(tiny, tmp_path):
    from nudging.evaluation.runner import rescore

    run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=2, max_new_tokens=4, out_dir=tmp_path, progress=False)
    cache = tmp_path / "results.jsonl"
    before = read_cache(cache)
    assert rescore(cache, progress=False) == 0
    stale = [dict(r) for r in before]
    stale[1]["metrics"] = {"correct": 1.0 - before[1]["metrics"]["correct"]}  # a score from a buggy checker
    cache.write_text("".join(json.dumps(r) + "\n" for r in stale))
    assert rescore(cache, progress=False) == 1
    assert read_cache(cache) == before


def test_ifeval_scoring_strict_and_loose(tmp_path):
    T.ensure_punkt(tmp_path)
    item = next(i for i in T.load_ifeval() if i.id == "1001")  # "no commas" only
    assert T.score_ifeval(item, "A trip to Japan in the manner of the Bard")["prompt_strict"] == 1.0
    failed = T.score_ifeval(item, "Hark, a trip")
    assert failed["prompt_strict"] == 0.0 and failed["inst_total"] == 1.0
    # Sentence counting goes through nltk's Punkt splitter: the empty parameter files must make it load.
    sentences = next(i for i in T.load_ifeval() if "length_constraints:number_sentences" in i.reference["instruction_id_list"])
    assert set(T.score_ifeval(sentences, "One. Two. Three.")) >= {"prompt_strict", "inst_loose"}
    # Loose accepts the answer without its first line; strict does not.
    loose = T.score_ifeval(item, "Sure, here it is:\nA trip to Japan")
    assert (loose["prompt_strict"], loose["prompt_loose"]) == (0.0, 1.0)


def test_limit_run_caches_resumes_and_reports(tiny, tmp_path, monkeypatch):
    calls = []
    generate_batch = tiny.generate_batch
    monkeypatch.setattr(tiny, "generate_batch", lambda prompts, *a, **k: calls.extend([k["gamma"]] * len(prompts)) or generate_batch(prompts, *a, **k))
    rows, paths = run_eval(tiny, ["ifeval", "gsm8k"], gammas=[0.5], limit=2, max_new_tokens=6, out_dir=tmp_path, progress=False)
    assert len(calls) == 2 * 2 * 3 and sorted(set(calls)) == [0.0, 0.5, 2.0]
    cache = tmp_path / "results.jsonl"
    records = read_cache(cache)
    assert len(records) == 12 and {r["system"] for r in records} == {"base", "nudger", "nudged@0.5"}
    assert {(r["task"], r["system"]): r["n"] for r in rows} == {(t, s): 2 for t in ("ifeval", "gsm8k") for s in ("base", "nudger", "nudged@0.5")}
    by_system = {r["system"]: r for r in rows if r["task"] == "ifeval"}
    assert by_system["base"]["nudge_share"] == 0.0 and by_system["nudger"]["nudge_share"] == 1.0
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["tokens_per_second"] > 0 for r in rows)
    table = paths["markdown"].read_text()
    assert "| ifeval | nudged@0.5 | 0.5 | 2 |" in table and "untrained" in table
    payload = json.loads(paths["json"].read_text())
    assert payload["rows"] == rows
    assert {(c["task"], c["versus"]) for c in payload["paired"]} == {(t, v) for t in ("ifeval", "gsm8k") for v in ("base", "nudger")}
    assert all(c["system"] == "nudged@0.5" and c["n"] == 2 and c["better"] + c["worse"] <= 2 for c in payload["paired"])
    assert "| ifeval | nudged@0.5 | base | 2 |" in table
    assert paths["png"].stat().st_size > 0

    # Interrupted run: the last record lost and a half-written line left behind. Only that item reruns.
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    calls.clear()
    rows2, _ = run_eval(tiny, ["ifeval", "gsm8k"], gammas=[0.5], limit=2, max_new_tokens=6, out_dir=tmp_path, progress=False)
    assert len(calls) == 1
    summary = lambda rs: [(r["task"], r["system"], r["n"], r["accuracy"], r["nudge_share"]) for r in rs]  # noqa: E731
    assert summary(rows2) == summary(rows)
    assert len(read_cache(cache)) == 12
    # Other settings (a different budget) are separate cache entries, not reused.
    calls.clear()
    run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=5, out_dir=tmp_path, progress=False)
    assert len(calls) == 3


def test_eval_command_with_limit(tiny, tmp_path, monkeypatch):
    from nudging import cli

    monkeypatch.setattr(cli.common, "load_nudger", lambda base, nudger, device, compile=None, dtype="auto", **tokenizers: tiny)
    app = typer.Typer()
    app.command()(eval_command)
    result = CliRunner().invoke(app, ["--task", "arc_easy", "--limit", "1", "-n", "4", "-g", "0.3", "-g", "0.6", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "| arc_easy | nudged@0.6 | 0.6 | 1 |" in result.output
    assert len(read_cache(tmp_path / "results.jsonl")) == 4
    bad = CliRunner().invoke(app, ["--task", "mmlu", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown task" in bad.output


def test_paper_compat_rows_are_their_own_systems(tiny, tmp_path, monkeypatch):
    seen = []
    generate_batch = tiny.generate_batch
    monkeypatch.setattr(tiny, "generate_batch", lambda prompts, cfg, **k: seen.append((k["gamma"], cfg.paper_compat)) or generate_batch(prompts, cfg, **k))
    rows, _ = run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=5, out_dir=tmp_path, progress=False, paper_compat=True)
    assert sorted(seen) == [(0.0, False), (0.5, False), (0.5, True), (2.0, False)]
    records = {r["system"]: r for r in read_cache(tmp_path / "results.jsonl")}
    assert set(records) == {"base", "nudger", "nudged@0.5", "nudged@0.5+paper"}
    assert records["nudged@0.5+paper"]["fingerprint"] != records["nudged@0.5"]["fingerprint"]
    assert records["nudged@0.5"]["fingerprint"] == records["base"]["fingerprint"]  # other rows keep their cache keys
    assert {r["system"] for r in rows} == set(records)


def test_draft_length_rows_decode_with_their_k(tiny, tmp_path, monkeypatch):
    """--draft-tokens adds nudged@γ,K=k rows: their own K and cache keys, the other rows unchanged."""
    seen = []
    generate_batch = tiny.generate_batch
    monkeypatch.setattr(tiny, "generate_batch", lambda prompts, cfg, **k: seen.append((k["gamma"], cfg.draft_tokens)) or generate_batch(prompts, cfg, **k))
    rows, paths = run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=6, out_dir=tmp_path, progress=False, draft_lengths=[1, 3])
    assert sorted(seen) == [(0.0, 16), (0.5, 1), (0.5, 3), (0.5, 16), (2.0, 16)]
    records = {r["system"]: r for r in read_cache(tmp_path / "results.jsonl")}
    assert set(records) == {"base", "nudger", "nudged@0.5", "nudged@0.5,K=1", "nudged@0.5,K=3"}
    assert len({records[s]["fingerprint"] for s in ("nudged@0.5", "nudged@0.5,K=1", "nudged@0.5,K=3")}) == 3
    assert records["nudged@0.5"]["fingerprint"] == records["base"]["fingerprint"]
    assert "| gsm8k | nudged@0.5,K=1 | 0.5 | 1 |" in paths["markdown"].read_text()


def test_base_template_is_a_setting_of_the_whole_run(tiny, tmp_path, monkeypatch):
    """--base-template changes the base's prompt format and stop string, and keys its own cache entries."""
    seen = []
    generate_batch = tiny.generate_batch
    monkeypatch.setattr(tiny, "generate_batch", lambda prompts, cfg, **k: seen.append(cfg) or generate_batch(prompts, cfg, **k))
    run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=4, out_dir=tmp_path, progress=False)
    _, paths = run_eval(tiny, ["gsm8k"], gammas=[0.5], limit=1, max_new_tokens=4, out_dir=tmp_path, progress=False, base_template="instruct")
    assert [c.stop for c in seen] == [("\nQuestion:",)] * 3 + [("\n### Instruction:",)] * 3
    assert seen[-1].base_template.answer_prefix == "### Response:\n"
    fps = {(r["system"], r["fingerprint"]) for r in read_cache(tmp_path / "results.jsonl")}
    assert len(fps) == 6 and len({fp for _, fp in fps}) == 2
    assert "base_template=instruct" in paths["markdown"].read_text()
    app = typer.Typer()
    app.command()(eval_command)
    bad = CliRunner().invoke(app, ["--base-template", "alpaca", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown base template" in bad.output


def test_proxy_tuned_row(tmp_path):
    """--proxy-base adds the paper's baseline for a pair sharing a vocabulary (tiny "same" pair)."""
    from nudging import Nudger
    from nudging.evaluation.proxy_tuning import as_backend
    from tiny_models import tiny_llama, tiny_pair

    b, bt, n, nt = tiny_pair("same")
    pair = Nudger(b, bt, n, nt)
    rows, paths = run_eval(pair, ["gsm8k"], gammas=[0.5], limit=2, max_new_tokens=5, out_dir=tmp_path, progress=False, proxy_base=as_backend(tiny_llama(nt, seed=9), nt))
    proxy = [r for r in rows if r["system"] == "proxy-tuned"]
    assert len(proxy) == 1 and proxy[0]["n"] == 2 and proxy[0]["nudge_share"] == 0.0
    assert "| gsm8k | proxy-tuned | – | 2 |" in paths["markdown"].read_text()


def test_bf16_answers_are_cached_apart_from_float32_ones():
    """A bf16 model answers differently: its records get their own fingerprint, float32 keeps its own."""
    import torch
    from nudging.evaluation.runner import eval_config, fingerprint, weight_dtypes

    base, base_tok, nudger, nudger_tok = tiny_pair("same")
    cfg = eval_config(8)
    fp32 = fingerprint(Nudger(base, base_tok, nudger, nudger_tok), cfg)
    assert weight_dtypes(Nudger(base, base_tok, nudger, nudger_tok)) == {}  # float32 adds no key: old caches stay valid
    half = Nudger(base.to(torch.bfloat16), base_tok, nudger, nudger_tok)
    assert weight_dtypes(half) == {"base": "bfloat16"} and fingerprint(half, cfg) != fp32
    assert fingerprint(Nudger(base.to(torch.float32), base_tok, nudger, nudger_tok), cfg) == fp32
