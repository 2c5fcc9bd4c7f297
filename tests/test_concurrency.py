"""A Nudger shared by many threads and coroutines (DESIGN.md "Concurrency"): callers never race on
model state. With the static K/V pool (the GPU default) concurrent callers used to corrupt each
other (a pool grown under a writer, one slot handed to two sessions); now every caller gets the
answer it gets alone, the pool grows without losing writes and shrinks when long sequences end."""

from __future__ import annotations

import asyncio
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from langchain_nudging import ChatNudging
from nudging import Nudger, NudgingConfig
from nudging.backends.local import KVSession, LocalModel
from nudging.backends.static import StaticModel

PROMPTS = ["Give three tips for sleep.", "Hi", "What is the capital of France? Answer briefly.", "Explain rain to a child.", "List five fruits.", "Name a colour."]
CFG = NudgingConfig(gamma=0.5, max_new_tokens=16)

# What is shared does not depend on the tokenizer pair: the cross-family one suffices.
pytestmark = pytest.mark.parametrize("pair", ["cross"], indirect=True)


def _static(pair: Nudger, **kw) -> Nudger:
    """A fresh Nudger over the pair's models, both in static pools (the CUDA default, eager here)."""
    b, n = pair.base, pair.nudger
    return Nudger(StaticModel(b.model, b.tokenizer, **kw), None, StaticModel(n.model, n.tokenizer, **kw), None, config=CFG)


def all_at_once(nudger: Nudger, prompts: list[str]) -> list[str]:
    """One thread per prompt, released together: the answers, in the prompts' order."""
    start = threading.Barrier(len(prompts))

    def call(prompt: str) -> str:
        start.wait()
        return nudger.generate(prompt).text

    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(call, prompts))


@pytest.fixture(scope="module")
def refs(pair) -> list[str]:
    """Each prompt alone, on the dynamic cache: what every concurrent caller must get."""
    return [pair.generate(p, CFG).text for p in PROMPTS]


def test_threads_sharing_a_static_pool_get_their_solo_answers(pair, refs):
    fast = _static(pair)  # a fresh pool: one slot, so the callers make it grow
    assert all_at_once(fast, PROMPTS) == refs


def test_langchain_async_and_batch_callers_get_their_solo_answers(pair, refs):
    """`asyncio.gather` of `ainvoke`, `abatch` and `batch(return_exceptions=True)`: each on a fresh pool."""

    async def gather(chat: ChatNudging) -> list:
        return await asyncio.gather(*(chat.ainvoke(p) for p in PROMPTS))

    for call in (lambda c: asyncio.run(gather(c)), lambda c: asyncio.run(c.abatch(PROMPTS)), lambda c: c.batch(PROMPTS, return_exceptions=True)):
        chat = ChatNudging(nudger=_static(pair))
        assert [m.content for m in call(chat)] == refs


def test_the_pool_gives_memory_back_when_long_sequences_end(pair):
    """A long sequence grows the pool; when it ends the pool shrinks to what the live ones need,
    and their cached positions survive both moves."""
    lm = pair.base
    fast = StaticModel(lm.model, lm.tokenizer, length=16)
    ids = torch.randint(5, 500, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    short, ref = fast.session(), KVSession(fast)
    long = fast.session()
    short.forward(ids[:5])
    LocalModel.forward_batch(fast, [ref], [ids[:5]], [1])
    long.forward(ids[:250])
    assert fast.length_limit >= 256 and fast.capacity >= 2
    long.close()
    assert fast.length_limit <= 64  # not sized forever for the longest sequence
    want = LocalModel.forward_batch(fast, [ref], [ids[5:9]], [4])[0]
    torch.testing.assert_close(short.forward(ids[5:9], 4), want, rtol=1e-4, atol=1e-4)


def test_growing_the_pool_holds_one_new_tensor_at_a_time(pair, monkeypatch):
    """Growth copies tensor by tensor: the peak is the new pool plus one old tensor, not both pools."""
    lm = pair.base
    fast = StaticModel(lm.model, lm.tokenizer, length=16)
    s = fast.session()
    s.forward(list(range(5, 15)))
    pool_shape = lambda t: t.dim() == 4 and t.shape[1] == fast._kv_heads and t.shape[3] == fast._head_dim  # noqa: E731
    alive = {id(t): t.numel() for t in fast.keys + fast.values}
    for t in fast.keys + fast.values:
        weakref.finalize(t, alive.pop, id(t), None)
    peak, old_one = [sum(alive.values())], fast.keys[0].numel()
    zeros = torch.zeros

    def tracked(*args, **kwargs):
        t = zeros(*args, **kwargs)
        if pool_shape(t):
            alive[id(t)] = t.numel()
            weakref.finalize(t, alive.pop, id(t), None)
            peak[0] = max(peak[0], sum(alive.values()))
        return t

    monkeypatch.setattr(torch, "zeros", tracked)
    s.forward(list(range(15, 75)))  # 70 positions: the pool's length grows 16 -> 128
    monkeypatch.undo()
    new = sum(t.numel() for t in fast.keys + fast.values)
    assert fast.length_limit >= 70
    assert peak[0] <= new + old_one, (peak[0], new, old_one)


class _Tight(LocalModel):
    """A device that fits `limit` positions per row in a forward (cached + new): a longer row
    raises torch.OutOfMemoryError, and so does any forward it shares."""

    limit = 60

    def forward_batch(self, sessions, ids, keeps, rows=None):
        if any(s.length + len(i) > self.limit for s, i in zip(sessions, ids)):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward_batch(sessions, ids, keeps)


LONG = "Summarise this: " + "the rain falls on the plain and the river runs to the sea " * 6


def test_out_of_memory_fails_only_the_row_that_does_not_fit(pair, refs):
    """A shared forward that runs out of memory: its rows are retried alone, the oversized one
    ends with a clear error, the others go on to their solo answers."""
    from nudging.decoding import BatchDecoder
    from nudging.errors import DeviceMemoryError

    b = pair.base
    tight = Nudger(_Tight(b.model, b.tokenizer), None, pair.nudger, None, config=CFG)
    batch = BatchDecoder(pad_budget=10**6)  # every row in one forward, the long prefill too
    for i, p in enumerate([LONG, *PROMPTS]):
        batch.add(i, tight.run(p))
    done = {}
    while len(batch):
        for key, item in batch.step():
            if isinstance(item, BaseException) or hasattr(item, "stats"):
                done[key] = item
    assert isinstance(done[0], DeviceMemoryError) and "out of memory" in str(done[0]) and "new ids" in str(done[0])
    assert [done[i + 1].text for i in range(len(PROMPTS))] == refs
    # through the Nudger: concurrent callers, one of them too long
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(tight.generate, p) for p in (PROMPTS[0], LONG, PROMPTS[1])]
    with pytest.raises(DeviceMemoryError, match="out of memory"):
        futures[1].result()
    assert [futures[0].result().text, futures[2].result().text] == refs[:2]


def test_astream_builds_its_run_off_the_event_loop(pair, monkeypatch):
    """Building a run (grammar compile, a first tokenizer build of seconds) never blocks the loop."""
    import nudging.nudger as facade

    fast = _static(pair)
    built_on, real = [], facade.Run

    def slow_run(*args, **kwargs):
        built_on.append(threading.current_thread())
        threading.Event().wait(0.3)  # as a grammar compile does
        return real(*args, **kwargs)

    monkeypatch.setattr(facade, "Run", slow_run)

    async def main() -> tuple[int, list]:
        ticks, done = 0, asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        items = [item async for item in fast.astream(PROMPTS[0])]
        done.set()
        await task
        return ticks, items

    ticks, items = asyncio.run(main())
    assert built_on and threading.main_thread() not in built_on
    assert ticks >= 20 and items[-1].text == fast.generate(PROMPTS[0]).text


def test_concurrent_callers_share_forwards(pair, refs, monkeypatch):
    """The engine batches callers of one Nudger: six threads at once need fewer base forwards than
    six callers one after another, and still get their solo answers."""
    fast = _static(pair)
    alone = sum(fast.generate(p).stats.base_forwards for p in PROMPTS)
    calls = []
    real = StaticModel.forward_batch

    def counting(self, sessions, *args, **kwargs):
        if self is fast.base:
            calls.append(len(sessions))
        return real(self, sessions, *args, **kwargs)

    monkeypatch.setattr(StaticModel, "forward_batch", counting)
    assert all_at_once(fast, PROMPTS) == refs
    assert max(calls) >= 2 and len(calls) < alone


@pytest.mark.real
def test_real_pair_concurrent_callers_on_static_pools_get_their_solo_answers(real_pair, pair):  # pair: the module's parametrisation asks for it
    """The issue's reproduction: the embedded pair in static pools, six callers at once (threads,
    then `gather` of ChatNudging.ainvoke) -> every answer equals the one-at-a-time one."""
    base, base_tok, nudger, nudger_tok = real_pair
    cfg = NudgingConfig(gamma=0.4, max_new_tokens=16)
    solo = Nudger(base, base_tok, nudger, nudger_tok, config=cfg)
    refs = [solo.generate(p).text for p in PROMPTS]
    fast = Nudger(StaticModel(base, base_tok), None, StaticModel(nudger, nudger_tok), None, config=cfg)
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        assert list(pool.map(lambda p: fast.generate(p).text, PROMPTS)) == refs
    chat = ChatNudging(nudger=fast)

    async def gather() -> list:
        return await asyncio.gather(*(chat.ainvoke(p) for p in PROMPTS))

    assert [m.content for m in asyncio.run(gather())] == refs


def test_exit_waits_for_an_engine_thread_still_freeing_its_last_run(pair):
    """At interpreter exit (atexit) every engine's thread is joined while Python still runs, also one
    whose Nudger is gone and which is still freeing its last run: a daemon thread still freeing tensors
    when finalization starts dies inside torch's C++ (`make demo` ended "terminate called without an
    active exception", status 134, on every run)."""
    import gc
    import time

    from nudging import Result
    from nudging.decoding import engine as engines

    freed = threading.Event()

    class SlowToFree:  # stands for a run's models, whose last reference the engine thread drops
        def __del__(self) -> None:
            time.sleep(0.5)
            freed.set()

    nudger = Nudger(pair.base.model, pair.base.tokenizer, pair.nudger.model, pair.nudger.tokenizer)
    engine, done, slow = nudger.engine, threading.Event(), SlowToFree()
    engine.submit([(nudger.run("Hi", max_new_tokens=2), lambda item, _held=slow: isinstance(item, Result) and done.set())])
    assert done.wait(60)
    del slow, nudger
    gc.collect()  # the Nudger is gone: its engine's thread ends, freeing what it still holds
    while engine._thread is not None:
        time.sleep(0.01)
    engine.stop()  # what the atexit hook does for every engine (all of them: here, only this one)
    assert freed.is_set() and not engine._runner.is_alive()
    assert engine in engines._ENGINES


def test_stop_fails_the_unfinished_runs_and_ends_the_thread(pair):
    import time

    nudger = Nudger(pair.base.model, pair.base.tokenizer, pair.nudger.model, pair.nudger.tokenizer)
    got: list = []
    nudger.engine.submit([(nudger.run("Tell a long story.", max_new_tokens=400, stop=[]), got.append)])
    while not got:
        time.sleep(0.005)
    nudger.engine.stop()
    assert isinstance(got[-1], RuntimeError) and "exiting" in str(got[-1])
    assert not nudger.engine._runner.is_alive()
