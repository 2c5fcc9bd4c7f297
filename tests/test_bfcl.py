"""BFCL v4 in the tool evaluation (evaluation/bfcl.py, tool_bench.py): BFCL's own AST checker on
hand-made answers, its types mapped to JSON Schema, and `eval-tools --bfcl` on a tiny pair."""

from __future__ import annotations

import json
import sys

import pytest
from nudging.evaluation import bfcl, tool_bench


def _calls(*pairs) -> list[dict]:
    return [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}} for i, (n, a) in enumerate(pairs)]


def _item(category: str, item_id: str) -> bfcl.BfclItem:
    return next(i for i in bfcl.load_items(category, 20) if i.id == item_id)


def test_the_checker_loads_without_the_leaderboard():
    checker = bfcl.load_checker()
    assert checker.MODEL_CONFIG_MAPPING[bfcl.CHECKER_MODEL].underscore_to_dot
    assert "bfcl_eval.constants.model_config" not in sys.modules  # the stub is gone, the real table never came
    assert not any(m.startswith("bfcl_eval.model_handler") for m in sys.modules)


def test_simple_python_answers_scored_by_bfcls_checker():
    tri = _item("simple_python", "simple_python_0")  # calculate_triangle_area(base=10, height=5, unit optional "units")
    assert bfcl.score(tri, _calls(("calculate_triangle_area", {"base": 10, "height": 5})))["correct"] == 1.0
    assert bfcl.score(tri, _calls(("calculate_triangle_area", {"base": 10, "height": 5, "unit": "Units"})))["correct"] == 1.0  # strings: BFCL's normal form
    wrong = bfcl.score(tri, _calls(("calculate_triangle_area", {"base": 10, "height": 6})))
    assert wrong == {"called": 1.0, "correct": 0.0, "error": wrong["error"]} and "height" in wrong["error"]
    assert "Missing required" in bfcl.score(tri, _calls(("calculate_triangle_area", {"base": 10})))["error"]
    assert bfcl.score(tri, _calls(("calculate_triangle_area", {"base": "10", "height": 5})))["correct"] == 0.0  # a string for an integer
    assert bfcl.score(tri, _calls(("calculate_triangle_area", "{not json")))["correct"] == 0.0
    two = _calls(("calculate_triangle_area", {"base": 10, "height": 5}), ("calculate_triangle_area", {"base": 10, "height": 5}))
    assert "Wrong number" in bfcl.score(tri, two)["error"]
    assert bfcl.score(tri, []) == {"called": 0.0, "correct": 0.0, "error": "no call"}
    fact = _item("simple_python", "simple_python_1")  # math.factorial: sent and answered as math_factorial
    assert fact.tools[0]["function"]["name"] == "math_factorial"
    assert bfcl.score(fact, _calls(("math_factorial", {"number": 5})))["correct"] == 1.0
    assert "not found" in bfcl.score(fact, _calls(("math.factorial", {"number": 5})))["error"]


def test_irrelevance_is_right_when_no_tool_is_called():
    item = _item("irrelevance", "irrelevance_0")
    assert item.answer is None
    assert bfcl.score(item, []) == {"called": 0.0, "correct": 1.0, "error": ""}
    assert bfcl.score(item, _calls(("determine_body_mass_index", {"weight": 70, "height": 1.8})))["correct"] == 0.0


def test_bfcl_types_become_json_schema():
    fn = {"name": "geo.plot", "description": "d", "parameters": {"type": "dict", "required": ["p"], "properties": {
        "p": {"type": "tuple", "items": {"type": "float"}}, "o": {"type": "dict", "properties": {"k": {"type": "any"}}}, "n": {"description": "no type"},
    }}}
    tool = bfcl.openai_tool(fn)["function"]
    assert tool["name"] == "geo_plot" and tool["parameters"]["type"] == "object" and tool["parameters"]["required"] == ["p"]
    props = tool["parameters"]["properties"]
    assert props["p"] == {"type": "array", "items": {"type": "number"}}
    assert props["o"]["type"] == "object" and props["o"]["properties"]["k"]["type"] == "string"
    assert props["n"]["type"] == "string"
    assert fn["parameters"]["type"] == "dict"  # BFCL's own description (what the checker reads) is left as it was
    for category in bfcl.CATEGORIES:  # every tool of the first items compiles to JSON Schema types only
        for item in bfcl.load_items(category, 20):
            text = json.dumps(item.tools)
            assert '"dict"' not in text and '"float"' not in text and '"tuple"' not in text


def test_an_unknown_category_is_named():
    from nudging.errors import ConfigError

    with pytest.raises(ConfigError, match="simple_java"):
        bfcl.load_items("simple_java")


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_eval_tools_bfcl_on_a_tiny_pair_writes_the_table_and_resumes(pair, tmp_path, monkeypatch):
    import typer
    from nudging import cli
    from nudging.cli.eval_tools import eval_tools_command
    from typer.testing import CliRunner

    monkeypatch.setattr(cli.common, "load_nudger", lambda base, nudger, device, compile=None, dtype="auto", **tokenizers: pair)
    app = typer.Typer()
    app.command()(eval_tools_command)
    args = ["--bfcl", "--limit", "2", "-n", "12", "-g", "0.5", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "bfcl.json").read_text())
    runs = {(r["benchmark"], r["tool_choice"]) for r in table["rows"]}
    assert runs == {("simple_python", "auto"), ("simple_python", "required"), ("irrelevance", "auto"), ("project set", "auto")}
    assert {r["system"] for r in table["rows"]} == {"base", "nudger", "nudged@0.5"}
    assert all(r["n"] == 2 for r in table["rows"])
    assert (tmp_path / "bfcl.png").stat().st_size > 0 and "| simple_python | required | base | 2 |" in result.output
    records = [json.loads(line) for line in (tmp_path / "bfcl.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 3 * 2
    for r in records:  # required: every answer that ended is a call, and BFCL's verdict is the one recorded
        if r["tool_choice"] == "required" and r["stop_reason"] != "length":
            assert r["metrics"]["called"] == 1.0, r["text"]
        assert r["metrics"]["correct"] == bfcl.score(_item(r["kind"].removeprefix("bfcl-"), r["item_id"]), r["tool_calls"])["correct"]
    lines = (tmp_path / "bfcl.jsonl").read_text().count("\n")
    assert CliRunner().invoke(app, args).exit_code == 0
    assert (tmp_path / "bfcl.jsonl").read_text().count("\n") == lines  # served from the cache


def test_aggregate_counts_leaks_and_who_wrote_the_first_token():
    rec = {"kind": "bfcl-irrelevance", "system": "nudged@0.4", "gamma": 0.4, "tool_choice": "auto", "stop_reason": "eos", "seconds": 2.0}
    records = [
        {**rec, "metrics": {"called": 0.0, "correct": 1.0}, "leaked": True, "first_source": "nudger"},
        {**rec, "metrics": {"called": 1.0, "correct": 0.0}, "leaked": False, "first_source": "base"},
    ]
    (row,) = tool_bench.aggregate(records)
    assert (row["n"], row["accuracy"], row["called"], row["leaked"], row["nudger_first"]) == (2, 0.5, 0.5, 1, 0.5)
    assert "| irrelevance | auto | nudged@0.4 | 2 | 0.500 | 0.500 | 1 |" in tool_bench.markdown([row], {})
