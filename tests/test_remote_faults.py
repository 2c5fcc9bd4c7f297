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
from nudging.results import Result
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


def test_one_failing_row_ends_its_own_request_only(local_and_url):
    """A server without an advertised window refuses one over-long prompt with 400: that row fails
    with a RemoteError (502 from our server), the rows beside it give their one-at-a-time text."""
    from faulty_server import Faults, faulty
    from nudging.backends.remote import RemoteError
    from nudging.decoding.batching import BatchDecoder

    local, url = local_and_url
    prompts = ["Give three tips for sleep.", "Count: " + " ".join(str(i % 10) for i in range(80)), "Name two rivers."]
    with faulty(url, Faults(hide_window=True, max_prompt=60)) as bad:
        remote = RemoteModel(bad, "tiny-base", local.base.tokenizer)
        assert remote.context_window is None
        mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
        batch, got = BatchDecoder(), {}
        for i, p in enumerate(prompts):
            batch.add(i, mixed.run(p, gamma=0.5, max_new_tokens=12))
        while len(batch):
            for key, item in batch.step():
                if isinstance(item, (Result, BaseException)):
                    got[key] = item
    assert isinstance(got[1], RemoteError) and not got[1].unavailable and "400" in str(got[1])
    for i in (0, 2):
        assert got[i].text == local.generate(prompts[i], gamma=0.5, max_new_tokens=12).text


def test_a_timed_out_request_is_not_retried(local_and_url):
    """A frozen server: the request ends after one `timeout` with a RemoteError (503 from our
    server), and no second copy is sent while the server may still be computing the first."""
    import threading

    from faulty_server import Faults, faulty
    from nudging.backends.remote import RemoteError

    local, url = local_and_url
    faults = Faults(freeze=threading.Event())
    with faulty(url, faults) as frozen:
        remote = RemoteModel(frozen, "tiny-base", local.base.tokenizer, timeout=1.0, retries=3)
        mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
        with pytest.raises(RemoteError, match="did not answer within 1 s") as info:
            mixed.generate("Hi", max_new_tokens=4)
        assert info.value.unavailable and faults.completions == 1


def test_retries_on_503_and_cancel_stops_them(local_and_url):
    """A 503 answer is retried (the server did not compute it); a cancel during the backoff ends the
    request at once instead of after every retry."""
    import threading

    from faulty_server import Faults, faulty
    from nudging.backends.remote import RemoteError

    local, url = local_and_url
    faults = Faults(status=503)
    with faulty(url, faults) as busy:
        remote = RemoteModel(busy, "tiny-base", local.base.tokenizer, retries=2)
        mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
        with pytest.raises(RemoteError, match="failed after 3 tries"):
            mixed.generate("Hi", max_new_tokens=4)
        assert faults.completions == 3
        faults.completions = 0
        slow = RemoteModel(busy, "tiny-base", local.base.tokenizer, retries=1000)  # ~hours of backoff
        cancel, error = threading.Event(), []
        worker = threading.Thread(target=lambda: error.append(pytest.raises(RemoteError, Nudger(slow, None, local.nudger.model, local.nudger.tokenizer).generate, "Hi", max_new_tokens=4, cancel=cancel)))
        faults.arrived.clear()
        worker.start()
        assert faults.arrived.wait(60)
        cancel.set()
        worker.join(60)
        assert not worker.is_alive() and error and faults.completions < 10


def test_cancel_ends_a_wait_on_a_frozen_server(local_and_url):
    """The engine thread does not wait out a frozen server once its request is cancelled (its
    client left, or its deadline passed): the wait ends at once, the request runs out unread."""
    import threading

    from faulty_server import Faults, faulty
    from nudging.backends.remote import RemoteError

    local, url = local_and_url
    faults = Faults(freeze=threading.Event())
    with faulty(url, faults) as frozen:
        remote = RemoteModel(frozen, "tiny-base", local.base.tokenizer, timeout=600.0)
        mixed = Nudger(remote, None, local.nudger.model, local.nudger.tokenizer)
        cancel, error = threading.Event(), []

        def run() -> None:
            try:
                mixed.generate("Hi", max_new_tokens=4, cancel=cancel)
            except RemoteError as exc:
                error.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        assert faults.arrived.wait(60)
        cancel.set()
        worker.join(60)
        assert not worker.is_alive(), "still waiting on the frozen server after cancel"
        assert error and "cancelled" in str(error[0])


def test_frozen_upstream_behind_our_server_frees_the_engine_at_the_deadline(local_and_url):
    """Behind `nudging serve` with --request-timeout: the request gets 504 at its deadline and the
    engine is free at once (not after the upstream's timeout, 4 times over with retries)."""
    import threading
    import time

    import httpx
    from faulty_server import Faults, faulty
    from nudging.serving import create_app
    from nudging.serving.app import Limits

    local, url = local_and_url
    faults = Faults(freeze=threading.Event())
    with faulty(url, faults) as frozen:
        remote = RemoteModel(frozen, "tiny-base", local.base.tokenizer, timeout=600.0)
        app = create_app(Nudger(remote, None, local.nudger.model, local.nudger.tokenizer), model_name="m", limits=Limits(timeout=3.0))
        with serve_in_thread(app) as ours, httpx.Client(timeout=120) as http:
            r = http.post(ours + "/completions", json={"prompt": "Hi", "max_tokens": 4})
            assert r.status_code == 504, r.text
            for _ in range(600):
                health = http.get(ours.removesuffix("/v1") + "/health").json()
                if health["running"] == 0:
                    break
                time.sleep(0.05)
            assert health["running"] == 0 and health["cancelled"] == 1, health


def test_close_closes_the_pool_and_the_connections(local_and_url):
    local, url = local_and_url
    with RemoteModel(url, "tiny-base", local.base.tokenizer) as remote:
        Nudger(remote, None, local.nudger.model, local.nudger.tokenizer).generate("Hi", max_new_tokens=2)
    assert remote.client.is_closed
    with pytest.raises(RuntimeError):
        remote._pool.submit(print)


def test_nudger_close_closes_its_remote_backends(local_and_url):
    local, url = local_and_url
    remote = RemoteModel(url, "tiny-base", local.base.tokenizer)
    with Nudger(remote, None, local.nudger.model, local.nudger.tokenizer) as mixed:
        mixed.generate("Hi", max_new_tokens=2)
    assert remote.client.is_closed
