"""Chat answers end at the base template's next-turn marker; a RawPrompt is continued as it is.

The tiny base writes gibberish, never "\\nQuestion:", so the marker is exercised with templates whose
marker is a short piece of what the base writes anyway (`stop_at_next_turn` does not change the prompt).
"""

from __future__ import annotations

import pytest
from nudging import BaseTemplate, Nudger, NudgingConfig, RawPrompt
from nudging.prompts import stop_strings
from nudging.text.sync import decode
from test_engine_invariants import own_generate

PROMPT = "Give three tips for sleep."


def test_next_turn_marker_of_each_template():
    assert BaseTemplate().next_turn == "\nQuestion:"
    assert BaseTemplate("### Instruction:\n", "### Response:\n", "\n\n").next_turn == "\n\n### Instruction:"
    assert BaseTemplate(stop_at_next_turn=False).next_turn is None
    assert BaseTemplate(question_prefix="").next_turn is None
    cfg = NudgingConfig(stop=("\nQuestion:", "END"))
    assert stop_strings(PROMPT, cfg) == ("\nQuestion:", "END")  # not twice
    assert stop_strings(RawPrompt(PROMPT), cfg) == ("\nQuestion:", "END")
    assert stop_strings(RawPrompt(PROMPT), NudgingConfig()) == ()


def test_answer_ends_where_the_base_starts_its_next_turn(pair):
    """gamma = 0: the base's own greedy text, cut before the marker (invariant 1 with the marker as a stop)."""
    nudger: Nudger = pair
    for sep in (" ", "\n", "."):
        for prefix in "aeionrstl":
            marker_on = BaseTemplate(question_prefix=prefix + " ", turn_separator=sep)
            free = nudger.generate(PROMPT, gamma=0.0, max_new_tokens=40, base_template=BaseTemplate(question_prefix=prefix + " ", turn_separator=sep, stop_at_next_turn=False))
            marker = marker_on.next_turn
            if marker in free.text[1:]:
                cut = nudger.generate(PROMPT, gamma=0.0, max_new_tokens=40, base_template=marker_on)
                assert cut.text == free.text[: free.text.index(marker)]
                assert cut.stats.stop_reason == "stop" and cut.prompts == free.prompts
                return
    pytest.fail("no candidate marker occurs in the base's text")


def test_raw_prompt_is_continued_as_it_is(pair):
    """Both models see the text itself; gamma = 0 is the base's own greedy continuation of it."""
    nudger: Nudger = pair
    text = "Q: 2+2?\nA: 4\nQ: 3+3?\nA:"
    res = nudger.generate(RawPrompt(text), gamma=0.0, max_new_tokens=30)
    assert res.prompts == {"base": text, "nudger": text}
    tok = nudger.base.tokenizer
    ids = tok.encode(text)
    assert nudger.prompt_ids(RawPrompt(text)) == {"base": ids, "nudger": nudger.nudger.tokenizer.encode(text)}
    ref = [t for t in own_generate(nudger.base.model, ids, 30, set(nudger.base.eos_ids)) if t not in nudger.base.eos_ids]
    assert res.text == decode(tok, ids + ref)[len(decode(tok, ids)) :]
    mixed = nudger.generate(RawPrompt(text), gamma=0.5, max_new_tokens=30)
    assert "".join(s.text for s in mixed.spans) == mixed.text


def test_empty_raw_prompt_is_refused(pair):
    with pytest.raises(Exception, match="prompt is empty"):
        pair.generate(RawPrompt("  "))
