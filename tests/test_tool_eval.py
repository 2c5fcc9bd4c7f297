"""The tool-use evaluation (nudging/evaluation/tool_use.py): its scoring on hand-made answers, and a
run over both tiny pairs: every system answers, constrained answers that end are well-formed, and a
rerun is served from the cache."""

from __future__ import annotations

import json

import pytest
from nudging.evaluation import tool_use
from nudging.evaluation.tool_set import REQUESTS, STRUCTURED, TOOLS


def _call(name: str, arguments: object) -> list[dict]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]


def _request(tool: str):
    return next(r for r in REQUESTS if r.tool == tool)


def test_the_set_is_big_enough_and_its_answers_fit_their_schemas():
    assert len(REQUESTS) >= 30 and len({r.tool for r in REQUESTS}) >= 3
    assert len({r.id for r in REQUESTS}) == len(REQUESTS)
    for r in REQUESTS:  # an expected answer the schema rejects could never be scored exact
        assert tool_use.score_call(r, _call(r.tool, r.arguments)) == dict.fromkeys(tool_use.TOOL_METRICS, 1.0), r.id


def test_exact_arguments_ignore_case_spaces_and_number_form():
    r = _request("convert_currency")
    loose = {k: (f" {v.lower()} " if isinstance(v, str) else float(v)) for k, v in r.arguments.items()}
    # lower case breaks the ISO-code pattern, so it is exact but not valid
    assert tool_use.score_call(r, _call(r.tool, loose)) == {"called": 1.0, "right_tool": 1.0, "valid_arguments": 0.0, "exact_arguments": 1.0}


def test_wrong_tool_invalid_arguments_and_no_call_score_zero():
    alarm = _request("set_alarm")
    assert tool_use.score_call(alarm, _call("get_weather", {"city": "Paris", "unit": "celsius"})) == {"called": 1.0, "right_tool": 0.0, "valid_arguments": 1.0, "exact_arguments": 0.0}
    assert tool_use.score_call(alarm, _call("set_alarm", {"hour": 25, "minute": 0}))["valid_arguments"] == 0.0
    assert tool_use.score_call(alarm, _call("set_alarm", {"hour": alarm.arguments["hour"]})) == {"called": 1.0, "right_tool": 1.0, "valid_arguments": 0.0, "exact_arguments": 0.0}
    assert tool_use.score_call(alarm, _call("set_alarm", "{not json")) == {"called": 1.0, "right_tool": 1.0, "valid_arguments": 0.0, "exact_arguments": 0.0}
    assert tool_use.score_call(alarm, []) == dict.fromkeys(tool_use.TOOL_METRICS, 0.0)


def test_structured_answers_must_be_whole_json_in_the_schema():
    person = next(s for s in STRUCTURED if s.id.startswith("person"))
    assert tool_use.score_structured(person, '{"name": "Ada", "age": 36}') == {"parsed": 1.0, "schema_valid": 1.0}
    assert tool_use.score_structured(person, '{"name": "Ada", "age": -1}') == {"parsed": 1.0, "schema_valid": 0.0}
    assert tool_use.score_structured(person, 'Sure: {"name": "Ada", "age": 36}') == {"parsed": 0.0, "schema_valid": 0.0}


def test_aggregate_averages_per_system_and_counts_mask_time_per_token():
    base = {"kind": "tools", "system": "base", "gamma": 0.0, "constrained": True, "nudge_share": 0.0}
    records = [
        {**base, "metrics": dict.fromkeys(tool_use.TOOL_METRICS, 1.0), "output_tokens": 30, "mask_seconds": 0.03, "stop_reason": "eos"},
        {**base, "metrics": dict.fromkeys(tool_use.TOOL_METRICS, 0.0), "output_tokens": 10, "mask_seconds": 0.01, "stop_reason": "length"},
    ]
    (row,) = tool_use.aggregate(records)
    assert row["n"] == 2 and row["right_tool"] == 0.5 and row["cut"] == 0.5
    assert row["mask_ms_per_token"] == pytest.approx(1.0)
    assert "| base | 0 | yes | 2 | 0.500 |" in tool_use.markdown([row], {})


def test_a_run_on_a_tiny_pair_scores_every_system_and_resumes(pair, tmp_path):
    systems = tool_use.tool_systems([0.4])
    out = tmp_path / "results.jsonl"
    records = tool_use.run_tool_eval(pair, systems, out, limit=2, max_new_tokens=48, progress=False)
    assert len(records) == 3 * 2 * len(systems)  # (tools, structured, structured-bounded) x 2 items x systems
    assert {(r["system"], r["constrained"]) for r in records} == {(s.name, s.constrained) for s in systems}
    for r in records:
        if r["constrained"] and r["stop_reason"] != "length":  # a grammar that ended is a whole answer
            metric = "valid_arguments" if r["kind"] == "tools" else "schema_valid"
            assert r["metrics"][metric] == 1.0, r["text"]
        if not r["constrained"]:
            assert r["mask_seconds"] == 0.0
    assert all(r["mask_seconds"] > 0 for r in records if r["constrained"])
    assert any(r["constrained"] and r["kind"] == "tools" and r["stop_reason"] != "length" for r in records)  # the check above ran
    lines = out.read_text().count("\n")
    again = tool_use.run_tool_eval(pair, systems, out, limit=2, max_new_tokens=48, progress=False)
    assert again == records and out.read_text().count("\n") == lines  # nothing regenerated
    assert len(TOOLS) == len({t["function"]["name"] for t in TOOLS})


@pytest.mark.parametrize("pair", ["cross"], indirect=True)
def test_eval_tools_command_writes_the_table(pair, tmp_path, monkeypatch):
    import typer
    from nudging import cli
    from nudging.cli.eval_tools import eval_tools_command
    from typer.testing import CliRunner

    monkeypatch.setattr(cli.common, "load_nudger", lambda base, nudger, device, compile=None, dtype="auto", **tokenizers: pair)
    app = typer.Typer()
    app.command()(eval_tools_command)
    result = CliRunner().invoke(app, ["--limit", "1", "-n", "8", "-g", "0.5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "table.json").read_text())
    assert {(r["kind"], r["system"], r["constrained"]) for r in table["rows"]} == {(k, s, c) for k in ("tools", "structured", "structured-bounded") for s in ("base", "nudger", "nudged@0.5") for c in (True, False)}
    assert table["settings"]["tool_choice"] == "required" and "| nudged@0.5 | 0.5 | yes | 1 |" in result.output
    bad = CliRunner().invoke(app, ["--tool-choice", "sometimes", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--tool-choice" in bad.output
