"""A remote base's faults and partial answers: unscored rows never reach a reader, sampling stays
inside the ids a server returned, one failing row ends its own request only, retries stop at the
request's deadline or cancel, and backends close their connections.

The peers are real servers on 127.0.0.1: the project's plain server, and a small proxy in front of
it (a thread of this process) that misbehaves on purpose."""

from __future__ import annotations

import math

import pytest
import torch
from nudging import Nudger, NudgingConfig
from nudging.backends.remote import RemoteModel
from nudging.serving import serve_in_thread
from nudging.serving.plain import create_plain_app


@pytest.fixture(scope="module")
def local_and_url():
    from tiny_models import tiny_pair

    base, base_tok, nud, nud_tok = tiny_pair("cross")
    local = Nudger(base, base_tok, nud, nud_tok)
    with serve_in_thread(create_plain_app(base, base_tok, "tiny-base")) as url:
        yield local, url


def test_unscored_rows_under_a_grammar_are_never_logits(local_and_url):
    """A sparse-rows backend leaves rows it was not asked for NaN; a grammar's mask writes -inf over
    the ids it forbids (id 0 among them), so a check of one column missed the NaN."""
    from nudging.decoding.grammar import Matcher, response_format_grammar
    from nudging.text import View, encode_continuation

    local, _ = local_and_url
    lm = local.base
    grammar = Matcher(response_format_grammar({"type": "json_object"}), lm.tokenizer, lm.eos_ids)
    view = View(lm, lm.tokenizer("Answer:")["input_ids"], grammar=grammar)
    ids, ends = encode_continuation(lm.tokenizer, '{"a": 1, "b": 2}')
    unscored = torch.full((len(ids), len(lm.tokenizer)), math.nan)
    masked, n = grammar.mask_along(unscored, ids)
    assert n == len(ids) and bool(masked[0, 0].isinf())  # the mask hid the NaN at id 0
    view.append_verified(ids[:2], ends[:2], ends[1], masked[1], ids[2:], masked[2:])
    assert view.logits is None and view.ahead_ids == [] and view.ahead_logits is None


def test_no_nan_row_reaches_a_reader_with_a_remote_base_and_a_grammar(local_and_url, monkeypatch):
    """End to end: a remote base under a JSON schema; every row the sampler or the policy reads is a number."""
    from nudging.decoding.sampling import Sampler
    from nudging.policies import TopProbPolicy

    local, url = local_and_url
    read: list[bool] = []
    pick, confident = Sampler.pick, TopProbPolicy.confident

    def checked_pick(self, logits):
        read.append(bool(logits.isnan().any()))
        return pick(self, logits)

    def checked_confident(self, logits, *args):
        read.append(bool(logits.isnan().any()))
        return confident(self, logits, *args)

    monkeypatch.setattr(Sampler, "pick", checked_pick)
    monkeypatch.setattr(TopProbPolicy, "confident", checked_confident)
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}}, "required": ["name", "age"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    for gamma in (0.3, 0.5, 0.7):
        got = mixed.generate("Describe a person.", gamma=gamma, max_new_tokens=40, response_format=fmt)
        assert got.text.startswith('{"name": "')  # (not the local text: a remote row is exact only for its top 20)
    assert read and not any(read), f"{sum(read)} of {len(read)} rows read were NaN"


@pytest.mark.parametrize("top_k", [0, 2])
def test_sampling_with_fewer_logprobs_than_asked_stays_on_the_returned_ids(local_and_url, top_k):
    """A server may return fewer than the 20 logprobs asked (a vocabulary filter, a smaller cap):
    the unreported ids share one fill value, and must not be drawn uniformly from the whole vocabulary."""
    from nudging.config import SamplingParams
    from nudging.decoding.sampling import Sampler

    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer, top_logprobs=20)
    row = remote.row({"token_id:5": -1.2, "token_id:9": -1.6, "token_id:2": -2.3})  # 3 of 20: 40% unreported
    assert abs(float(torch.softmax(row, -1)[5]) - 0.301) < 1e-3  # top-1 probability stays exact
    sampler = Sampler(SamplingParams(temperature=1.0, top_k=top_k), seed=0, support=remote.capabilities.top_k)
    draws = [sampler.pick(row) for _ in range(600)]
    assert set(draws) <= ({5, 9, 2} if top_k == 0 else {5, 9})
    assert abs(draws.count(5) / 600 - (0.5 if top_k == 0 else 0.6)) < 0.08
