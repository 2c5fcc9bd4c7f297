"""Constrained output (DESIGN.md "Constrained output") on both tiny pairs: invariants 1-3 under the
same mask, outputs that always validate, and the views' matchers following appends and rollbacks."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llguidance import LLMatcher
from nudging import Nudger
from nudging.decoding.grammar import _lltokenizer, response_format_grammar
from nudging.errors import ConfigError
from nudging.text.sync import decode
from transformers import LogitsProcessor, LogitsProcessorList

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["name", "ok", "n"],
}
COLOURS = {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3}
FORMATS = [
    {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
    COLOURS,  # a bare schema
]
PROMPT = "Describe a person as JSON."


class _Mask(LogitsProcessor):
    """HF generate under a grammar: llguidance used directly, one fresh matcher per generation."""

    def __init__(self, grammar: str, tok, eos: frozenset[int], n_prompt: int) -> None:
        self.m = LLMatcher(_lltokenizer(tok, eos), LLMatcher.grammar_from_lark(grammar))
        self.n_prompt, self.n = n_prompt, len(tok)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.n_prompt:
            assert self.m.consume_token(int(input_ids[0, -1]))
        bias = torch.frombuffer(bytearray(self.m.compute_logit_bias()), dtype=torch.uint8)[: self.n]
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
        allowed[: len(bias)] = bias > 0
        return scores.masked_fill(~allowed, float("-inf"))


def constrained_generate(lm, ids: list[int], fmt, budget: int) -> str:
    grammar = response_format_grammar(fmt)
    proc = _Mask(grammar, lm.tokenizer, lm.eos_ids, len(ids))
    out = lm.model.generate(torch.tensor([ids]), max_new_tokens=budget, do_sample=False, eos_token_id=sorted(lm.eos_ids), logits_processor=LogitsProcessorList([proc]))
    new = [t for t in out[0, len(ids) :].tolist() if t not in lm.eos_ids]
    return decode(lm.tokenizer, ids + new)[len(decode(lm.tokenizer, ids)) :]


def schema_of(fmt) -> dict:
    return fmt["json_schema"]["schema"] if fmt.get("type") == "json_schema" else fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_gamma_zero_is_base_constrained_greedy(pair: Nudger, fmt):
    """Invariant 1 under a grammar: gamma = 0 is the base's own greedy decoding under the same mask."""
    res = pair.generate(PROMPT, gamma=0.0, max_new_tokens=120, response_format=fmt)
    ids = pair.base.tokenizer.encode(res.prompts["base"])
    assert res.text == constrained_generate(pair.base, ids, fmt, 120)
    assert res.stats.stop_reason == "eos" and res.stats.rounds == 0
    jsonschema.validate(json.loads(res.text), schema_of(fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_gamma_above_one_is_nudger_constrained_greedy(pair: Nudger, fmt):
    """Invariant 2 under a grammar: gamma > 1 is the nudger's own greedy decoding under the same mask
    (the base's matcher accepts every nudge, re-tokenized)."""
    res = pair.generate(PROMPT, gamma=1.5, max_new_tokens=120, response_format=fmt)
    ids = pair.nudger.tokenizer.encode(res.prompts["nudger"], add_special_tokens=False)
    assert res.text == constrained_generate(pair.nudger, ids, fmt, 200)
    assert res.stats.base_tokens == 0 and res.stats.stop_reason == "eos"
    jsonschema.validate(json.loads(res.text), schema_of(fmt))


@pytest.mark.parametrize("gamma", [0.3, 0.6])
def test_speculation_is_exact_under_a_grammar(pair: Nudger, gamma):
    """Invariant 3 under a grammar: the draft tail reused as lookahead is masked like a fresh forward."""
    for fmt in FORMATS:
        on = pair.generate(PROMPT, gamma=gamma, max_new_tokens=120, response_format=fmt)
        off = pair.generate(PROMPT, gamma=gamma, max_new_tokens=120, response_format=fmt, speculation=False)
        assert on.text == off.text and on.spans == off.spans
        assert "".join(s.text for s in on.spans) == on.text
        jsonschema.validate(json.loads(on.text), schema_of(fmt))


def test_views_follow_the_grammar(pair: Nudger):
    """Each view's matcher has consumed exactly its answer ids (own and foreign) after a mid-gamma run."""
    run = pair.run(PROMPT, gamma=0.5, max_new_tokens=120, response_format=FORMATS[0])
    seen = []
    for view in (run.B, run.N):
        consume = view.grammar.consume
        view.grammar.consume = lambda ids, c=consume, v=view: (seen.append(v), c(ids))[1]
    events = list(run.events())
    res = events[-1]
    assert {id(v) for v in seen} == {id(run.B), id(run.N)}
    assert run.B.grammar.accepting and res.stats.stop_reason == "eos"
    assert res.stats.nudger_tokens and res.stats.base_tokens  # both models wrote under the mask
    assert res.stats.mask_seconds > 0


# -- random schemas -----------------------------------------------------------------------------
_leaf = st.one_of(
    st.just({"type": "boolean"}),
    st.lists(st.sampled_from(["a", "b c", "yes", "no", "x-1"]), min_size=1, max_size=3, unique=True).map(lambda e: {"enum": e}),
    st.integers(0, 6).map(lambda n: {"type": "string", "maxLength": n}),
    st.tuples(st.integers(-50, 0), st.integers(1, 50)).map(lambda r: {"type": "integer", "minimum": r[0], "maximum": r[1]}),
    st.just({"type": "null"}),
)


def _object(children):
    props = st.dictionaries(st.sampled_from(["id", "name", "tags", "score", "ok"]), children, min_size=1, max_size=3)
    return st.tuples(props, st.booleans()).map(
        lambda pr: {"type": "object", "properties": pr[0], "required": sorted(pr[0]) if pr[1] else sorted(pr[0])[:1]}
    )


_schemas = st.recursive(
    _leaf,
    lambda children: st.one_of(_object(children), children.map(lambda c: {"type": "array", "items": c, "maxItems": 3})),
    max_leaves=6,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=_schemas, gamma=st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.5]))
def test_output_always_validates(pair: Nudger, schema, gamma):
    """Whatever the schema and gamma, a constrained answer that ends parses and validates."""
    res = pair.generate(PROMPT, gamma=gamma, max_new_tokens=300, response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    assert res.stats.stop_reason == "eos", res.text
    jsonschema.validate(json.loads(res.text), schema)


def test_json_object_and_regex(pair: Nudger):
    res = pair.generate(PROMPT, gamma=0.5, max_new_tokens=40, response_format={"type": "regex", "pattern": "(yes|no), [0-9]{2}"})
    assert res.text in {f"{w}, {n:02d}" for w in ("yes", "no") for n in range(100)}
    res = pair.generate(PROMPT, gamma=0.5, max_new_tokens=60, response_format={"type": "json_object"})
    if res.stats.stop_reason == "eos":
        assert isinstance(json.loads(res.text), dict)
    else:
        assert res.text.startswith("{")


def test_bad_formats_fail_up_front(pair: Nudger):
    with pytest.raises(ConfigError, match="json_schema"):
        pair.generate(PROMPT, response_format={"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(ConfigError, match="invalid grammar"):
        pair.run(PROMPT, response_format={"type": "lark", "grammar": "start: undefined_rule"})
    with pytest.raises(ConfigError, match="response_format must be a dict"):
        pair.generate(PROMPT, response_format="json")


# -- closing within the budget (decoding/closing.py) ---------------------------------------------
UNBOUNDED = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "bio": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "bio", "tags"],
}


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5])
def test_unbounded_schemas_close_within_the_budget(pair: Nudger, gamma):
    """Strings and arrays without bounds: random models write them until the budget, and main cut
    the answer mid-value ("length", invalid JSON). The mask steers to a close in time instead."""
    for budget in (24, 48):
        res = pair.generate(PROMPT, gamma=gamma, max_new_tokens=budget, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": UNBOUNDED}})
        assert res.stats.output_tokens <= budget and res.finish_reason == "stop", res.text
        jsonschema.validate(json.loads(res.text), UNBOUNDED)


def test_a_budget_too_small_to_close_is_reported_as_cut(pair: Nudger):
    res = pair.generate(PROMPT, gamma=0.5, max_new_tokens=3, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": UNBOUNDED}})
    assert res.stats.stop_reason == "length" and res.finish_reason == "length"


def test_escaped_slashes_in_patterns(pair: Nudger):
    """A pattern written with `\\/` (as JSON-schema patterns often are) compiles as a regex format
    (main: "lexer error") and in a schema, and means a slash."""
    res = pair.generate(PROMPT, gamma=0.5, max_new_tokens=40, response_format={"type": "regex", "pattern": r"https?:\/\/[a-z]{1,5}\.org"})
    assert re.fullmatch(r"https?://[a-z]{1,5}\.org", res.text)
    schema = {"type": "object", "properties": {"path": {"type": "string", "pattern": r"^[a-z]{1,4}\/[0-9]{1,3}$"}}, "required": ["path"]}
    res = pair.generate(PROMPT, gamma=0.5, max_new_tokens=60, response_format=schema)
    assert re.fullmatch(r"[a-z]{1,4}/[0-9]{1,3}", json.loads(res.text)["path"])
