"""End to end on the embedded real pair (gemma-3-270m base, SmolLM2-135M-Instruct nudger).

Why nudging exists, in one test: the base model alone does not know when a chat answer ends,
the nudged one does. Plus the two user-facing scripts, so `make demo` and the README quickstart
cannot silently rot. Each real generation costs seconds on two CPU cores: keep these few and short.
"""

from __future__ import annotations

import importlib.util
import io
import re
import runpy
from pathlib import Path

import pytest
from nudging import BaseTemplate, Nudger
from rich.console import Console

pytestmark = pytest.mark.real

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
BUDGET = 48


@pytest.fixture(scope="module")
def real(real_pair) -> Nudger:
    return Nudger(*real_pair)


def test_nudged_answer_ends_where_the_base_alone_rambles_on(real):
    """In the paper's setting (no next-turn stop) the base alone writes new questions until the
    budget ends; nudged, the answer ends by itself. By default both end at "\nQuestion:"."""
    paper = BaseTemplate(stop_at_next_turn=False)
    nudged = real.generate(FRANCE, gamma=0.4, max_new_tokens=BUDGET, base_template=paper)
    assert nudged.stats.stop_reason == "eos", nudged.text
    assert nudged.stats.output_tokens < BUDGET
    assert 0 < nudged.stats.nudge_share < 1
    assert {s.source for s in nudged.spans} == {"base", "nudger"}
    assert "Paris" in nudged.text
    default = real.generate(FRANCE, gamma=0.4, max_new_tokens=BUDGET)
    assert default.stats.stop_reason in ("eos", "stop") and "Paris" in default.text and "Question:" not in default.text

    alone = real.generate(FRANCE, gamma=0.0, max_new_tokens=BUDGET, base_template=paper)
    assert alone.stats.stop_reason == "length", alone.text  # never stops by itself within the budget
    assert alone.stats.output_tokens == BUDGET
    assert alone.stats.nudger_tokens == 0 and {s.source for s in alone.spans} == {"base"}


def test_demo_runs_and_shows_both_sides(real):
    spec = importlib.util.spec_from_file_location("demo", EXAMPLES / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = io.StringIO()
    question = "How many legs does a spider have?"
    [(alone, nudged)] = demo.main([question], nudger=real, max_new_tokens=32, console=Console(file=out, width=400))  # wide: no cell wraps a line the test reads
    shown = out.getvalue()
    assert question in shown and "Base model alone (gamma = 0)" in shown and "Nudged (gamma = 0.4)" in shown
    assert alone.stats.stop_reason == "length" and nudged.stats.stop_reason == "eos"
    assert "Answers that ended by themselves: base alone 0/1, nudged 1/1." in shown
    assert f"The nudger wrote {nudged.stats.nudge_share:.0%} of the nudged tokens" in shown
    # what a user waits for, per answer and in all; no tokens/s of the base alone's runaway text
    assert shown.count("s to the finished answer") == 2 and "cut at the 32-token budget" in shown
    waited = re.search(r"Waiting for all 1 answers: ([\d.]+) s base alone \(1 cut at the 32-token budget\), ([\d.]+) s nudged, of which ([\d.]+) s reading the prompts; past the prompts the nudged answers were written at ([\d.]+) tokens/s", shown)
    assert waited, shown[-600:]
    base_s, nudged_s, reading, tps = map(float, waited.groups())
    assert 0 < reading < nudged_s and tps > 0 and base_s > 0
    assert "tokens/s base alone" not in shown


def test_quickstart_runs_as_written(real, monkeypatch, capsys):
    monkeypatch.setattr(Nudger, "default", classmethod(lambda cls, **kw: real))  # the pair is already loaded
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "Paris" in printed and "('nudger', " in printed and ("stop: eos" in printed or "stop: stop" in printed)  # EOS, or the next "\nQuestion:"
    assert "8" in printed.splitlines()[-1]  # the streamed spider answer
