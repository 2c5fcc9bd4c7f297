"""The speed benchmark runs end to end (smoke: tiny pair, no timing asserted)."""

from __future__ import annotations

import json

from nudging import NudgingConfig
from nudging.bench import speed as bench


def test_bench_smoke(pair, tmp_path):
    report = bench.run(pair, prompts=bench.PROMPTS[:2], config=NudgingConfig(gamma=0.5, max_new_tokens=12), warmup=1)
    assert len(report.pairs) == 2
    for p in report.pairs:
        assert p.tokens >= 1 and p.base_only_tps > 0 and p.nudged_tps > 0
        assert p.ratio == p.nudged_tps / p.base_only_tps
        assert 0 <= p.nudge_share <= 1 and p.base_forwards_per_token > 0
    summary = report.summary()
    assert summary["median_ratio"] > 0 and summary["peak_memory_mb"] > 0
    json_path, _ = bench.write([report], tmp_path)
    data = json.loads(json_path.read_text())
    assert data[0]["summary"]["gamma"] == 0.5 and len(data[0]["pairs"]) == 2


def test_random_pair_runs(tokenizers):
    _, smol = tokenizers
    nudger = bench.random_pair("tiny", "tiny", smol, device="cpu")
    res = nudger.generate("Hello", gamma=0.5, max_new_tokens=8)
    assert res.stats.output_tokens >= 1 and res.text == "".join(s.text for s in res.spans)


def test_batch_bench_smoke(pair, tmp_path):
    from nudging.bench import batch as bench_batch

    report = bench_batch.run(pair, [1, 3], config=NudgingConfig(gamma=0.5, max_new_tokens=10), repeats=1)
    assert [r["batch"] for r in report["rows"]] == [1, 3]
    for r in report["rows"]:
        assert r["base_only_tps"] > 0 and r["nudged_tps"] > 0 and 1 <= r["nudged_tokens"] <= 10 * r["batch"]
        assert r["ratio"] == r["nudged_tps"] / r["base_only_tps"]
    assert report["rows"][0]["nudged_vs_batch1"] == 1.0
    json_path, _ = bench_batch.write(report, tmp_path)
    assert json.loads(json_path.read_text())["rows"][1]["batch"] == 3


def test_compare_bench_smoke(pair, tmp_path):
    """Every system runs (or says why it cannot) and the report has ratios against HF generate."""
    from nudging.bench import compare

    report = compare.run(pair, prompts=compare.PROMPTS[:1], max_new_tokens=10)
    names = set(report["summary"]) | set(report["unavailable"])
    assert names == set(compare.OURS) | set(compare.HF)
    assert "HF generate" in report["summary"] and report["summary"]["HF generate"]["ratio"] == 1.0
    for name in compare.OURS:
        s = report["summary"][name]
        assert s["tps"] > 0 and s["ids_per_base_forward"] > 0
    json_path, _ = compare.write(report, tmp_path)
    assert json.loads(json_path.read_text())["rows"][0]["tokens"] >= 1


def test_draft_table_command(tmp_path, tokenizers):
    from nudging.cli import app
    from nudging.decoding.drafting import NgramTable
    from typer.testing import CliRunner

    corpus = tmp_path / "c.json"
    corpus.write_text(json.dumps(["the cat sat on the mat", {"output": "one two three four"}]))
    out = tmp_path / "t.pt"
    res = CliRunner().invoke(app, ["draft-table", str(out), "--tokenizer", "embedded:base", "--corpus", str(corpus)])
    assert res.exit_code == 0, res.output
    table = NgramTable.load(out)
    ids = tokenizers[0].encode("one two three four", add_special_tokens=False)
    assert table.next[(ids[0], ids[1])] == {ids[2]: 1.0}
