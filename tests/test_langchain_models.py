"""NudgingLLM and ChatNudging on tiny random pairs: every LangChain entry point gives the engine's
greedy output, stop strings are cut exactly, callbacks see each delta once, async never blocks the
event loop, and cancelling an async call stops the engine."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_nudging import ChatNudging, NudgingLLM
from langchain_nudging.chat_models import to_engine_messages

PROMPTS = ["Give three tips for sleep.", "Name a colour."]
GAMMA, BUDGET = 0.5, 16  # at gamma 0.5 both tiny models write

# The adapters do not depend on the tokenizer pair: the cross-family one (gemma-3 + SmolLM2) suffices.
pytestmark = pytest.mark.parametrize("pair", ["cross"], indirect=True)


@pytest.fixture(scope="module")
def refs(pair) -> dict:
    """The engine's own greedy results, the reference every entry point must reproduce."""
    return {p: _reference(pair, p) for p in PROMPTS}


@pytest.fixture
def llm(pair) -> NudgingLLM:
    return NudgingLLM(nudger=pair, gamma=GAMMA, max_tokens=BUDGET)


@pytest.fixture
def chat(pair) -> ChatNudging:
    return ChatNudging(nudger=pair, gamma=GAMMA, max_tokens=BUDGET)


def _reference(pair, prompt, **overrides):
    return pair.generate(prompt, gamma=GAMMA, max_new_tokens=BUDGET, **overrides)


@contextmanager
def _counted_forwards(model, delay: float = 0.0):
    """Count (and optionally slow down) a model's forward calls while the block runs (hook the backbone:
    the engine runs it and the output layer itself, to compute logits only for the rows it needs)."""
    calls = []

    def hook(module, args):
        calls.append(time.perf_counter())
        time.sleep(delay)

    handle = model.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


class _Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token, **kwargs) -> None:
        self.tokens.append(token)

    def on_llm_end(self, response, **kwargs) -> None:
        self.result = response


# -- one answer, every entry point ----------------------------------------------------------
def test_llm_sync_paths_equal_engine(llm, refs):
    refs = [refs[p].text for p in PROMPTS]
    assert any(refs), "the tiny pair wrote nothing: the comparison would prove nothing"
    assert [llm.invoke(p) for p in PROMPTS] == refs
    assert ["".join(llm.stream(p)) for p in PROMPTS] == refs
    assert llm.batch(PROMPTS) == refs


@pytest.mark.asyncio
async def test_llm_async_paths_equal_engine(llm, refs):
    refs = [refs[p].text for p in PROMPTS]
    assert [await llm.ainvoke(p) for p in PROMPTS] == refs
    assert ["".join([c async for c in llm.astream(p)]) for p in PROMPTS] == refs
    assert await llm.abatch(PROMPTS) == refs


def test_chat_sync_paths_equal_engine(chat, refs):
    refs = [refs[p].text for p in PROMPTS]
    assert [chat.invoke(p).content for p in PROMPTS] == refs
    assert ["".join(c.content for c in chat.stream(p)) for p in PROMPTS] == refs
    assert [m.content for m in chat.batch(PROMPTS)] == refs


@pytest.mark.asyncio
async def test_chat_async_paths_equal_engine(chat, refs):
    refs = [refs[p].text for p in PROMPTS]
    assert [(await chat.ainvoke(p)).content for p in PROMPTS] == refs
    assert ["".join([c.content async for c in chat.astream(p)]) for p in PROMPTS] == refs
    assert [m.content for m in await chat.abatch(PROMPTS)] == refs


# -- metadata ---------------------------------------------------------------------------------
def test_llm_generation_info_carries_spans_and_stats(llm, refs):
    ref = refs[PROMPTS[0]]
    gen = llm.generate([PROMPTS[0]]).generations[0][0]
    info = gen.generation_info
    assert info["spans"] == [{"text": s.text, "source": s.source} for s in ref.spans]
    assert "".join(s["text"] for s in info["spans"]) == gen.text
    assert info["stats"]["output_tokens"] == ref.stats.output_tokens
    assert info["stats"]["prompt_tokens"] == ref.stats.prompt_tokens
    assert info["prompts"] == ref.prompts
    # a stream ends with the same metadata (its closing chunk carries it)
    handler = _Tokens()
    assert "".join(llm.stream(PROMPTS[0], config={"callbacks": [handler]})) == gen.text
    assert handler.result.generations[0][0].generation_info == {**info, "stats": handler.result.generations[0][0].generation_info["stats"]}


def test_chat_usage_and_response_metadata(chat, refs):
    ref = refs[PROMPTS[0]]
    msg = chat.invoke(PROMPTS[0])
    assert msg.usage_metadata == {
        "input_tokens": ref.stats.prompt_tokens,
        "output_tokens": ref.stats.output_tokens,
        "total_tokens": ref.stats.prompt_tokens + ref.stats.output_tokens,
    }
    meta = msg.response_metadata
    assert meta["spans"] == [{"text": s.text, "source": s.source} for s in ref.spans]
    assert meta["nudge_share"] == ref.stats.nudge_share
    assert meta["finish_reason"] == ref.finish_reason and meta["stop_reason"] == ref.stats.stop_reason
    assert meta["model_name"] == chat.model_name
    streamed = None
    for chunk in chat.stream(PROMPTS[0]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.usage_metadata == msg.usage_metadata  # counted once, not per chunk
    assert streamed.response_metadata["spans"] == meta["spans"]


def test_from_pretrained_wraps_loaded_models(pair, refs):
    chat = ChatNudging.from_pretrained(
        pair.base.model, pair.nudger.model, base_tokenizer=pair.base.tokenizer, nudger_tokenizer=pair.nudger.tokenizer, gamma=GAMMA, max_tokens=BUDGET
    )
    assert chat.invoke(PROMPTS[0]).content == refs[PROMPTS[0]].text


def test_identifying_params_and_overrides(pair, llm):
    params = llm._identifying_params
    assert params["gamma"] == GAMMA and params["max_new_tokens"] == BUDGET
    assert params["base"] == pair.base.name and params["nudger"] == pair.nudger.name
    # per-call engine settings pass through; the alias max_new_tokens names the same field
    assert llm.invoke(PROMPTS[0], gamma=0.0) == pair.generate(PROMPTS[0], gamma=0.0, max_new_tokens=BUDGET).text
    assert NudgingLLM(nudger=pair, max_new_tokens=7).max_tokens == 7
    with pytest.raises(TypeError, match="gama"):
        llm.invoke(PROMPTS[0], gama=0.3)
    with pytest.raises(ValueError, match="gamma"):
        NudgingLLM(nudger=pair, gamma=-1)
    with pytest.raises(ValueError, match="draft_token"):
        NudgingLLM(nudger=pair, model_kwargs={"draft_token": 4})


# -- stop strings -------------------------------------------------------------------------------
def _stop_in(text: str) -> tuple[str, str]:
    """A stop string taken from the middle of `text`, and the text before its first occurrence."""
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), f"no usable stop string in {text!r}"
    return stop, text[: text.index(stop)]


@pytest.mark.asyncio
async def test_stop_string_never_in_output(pair, llm, chat, refs):
    prompt = max(PROMPTS, key=lambda p: len(refs[p].text))
    stop, expected = _stop_in(refs[prompt].text)
    outputs = [
        llm.invoke(prompt, stop=[stop]),
        "".join(llm.stream(prompt, stop=[stop])),
        await llm.ainvoke(prompt, stop=[stop]),
        "".join([c async for c in llm.astream(prompt, stop=[stop])]),
        NudgingLLM(nudger=pair, gamma=GAMMA, max_tokens=BUDGET, stop=[stop]).invoke(prompt),
        chat.invoke(prompt, stop=[stop]).content,
        "".join(c.content for c in chat.stream(prompt, stop=[stop])),
        "".join([c.content async for c in chat.astream(prompt, stop=[stop])]),
    ]
    assert outputs == [expected] * len(outputs)
    assert chat.invoke(prompt, stop=[stop]).response_metadata["finish_reason"] == "stop"


# -- callbacks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["llm", "chat"])
def test_each_delta_reaches_callbacks_once(pair, llm, chat, kind):
    model = llm if kind == "llm" else chat
    deltas = [ev.text for ev in pair.stream(PROMPTS[0], gamma=GAMMA, max_new_tokens=BUDGET)]
    handler = _Tokens()
    for _ in model.stream(PROMPTS[0], config={"callbacks": [handler]}):
        pass
    assert [t for t in handler.tokens if t] == deltas


def test_chat_streaming_flag_streams_invoke(pair, refs):
    handler = _Tokens()
    chat = ChatNudging(nudger=pair, gamma=GAMMA, max_tokens=BUDGET, streaming=True, callbacks=[handler])
    msg = chat.invoke(PROMPTS[0])
    assert "".join(handler.tokens) == msg.content == refs[PROMPTS[0]].text
    assert len([t for t in handler.tokens if t]) > 1


# -- chat messages -----------------------------------------------------------------------------
def test_chat_messages_reach_both_prompts(pair, chat):
    msgs = [SystemMessage("Be brief."), HumanMessage("2+2?"), AIMessage("calc"), ToolMessage("4", tool_call_id="1"), HumanMessage([{"type": "text", "text": "So?"}])]
    assert to_engine_messages(msgs) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "calc"},
        {"role": "tool", "content": "4"},
        {"role": "user", "content": "So?"},
    ]
    with pytest.raises(ValueError, match="text only"):
        to_engine_messages([HumanMessage([{"type": "image", "url": "https://example.com/a.png"}])])
    msgs = [SystemMessage("Be brief."), HumanMessage("hello"), AIMessage("hi there"), HumanMessage("how are you")]
    meta = chat.invoke(msgs).response_metadata
    assert meta["prompts"]["base"] == "Be brief.\nQuestion: hello\nAnswer: hi there\nQuestion: how are you\nAnswer: "
    nudger_prompt = meta["prompts"]["nudger"]
    assert all(s in nudger_prompt for s in ("Be brief.", "hello", "hi there", "how are you"))
    assert nudger_prompt == pair.nudger.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}, {"role": "user", "content": "how are you"}],
        tokenize=False,
        add_generation_prompt=True,
    )


# -- async: non-blocking and cancellable ---------------------------------------------------------
async def _ticks_during(coro) -> tuple[int, float]:
    """Run `coro` while another coroutine ticks every millisecond; (ticks, seconds) during it."""
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await coro
    seconds = time.perf_counter() - t0
    done.set()
    await task
    return ticks, seconds


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["llm", "chat"])
async def test_async_calls_do_not_block_the_loop(pair, kind):
    model = (NudgingLLM if kind == "llm" else ChatNudging)(nudger=pair, gamma=GAMMA, max_tokens=BUDGET)

    async def consume_stream():
        return [c async for c in model.astream(PROMPTS[0])]

    # Each base forward sleeps 20 ms (as a real model computes): a blocked loop could not tick meanwhile.
    with _counted_forwards(pair.base.model.base_model, delay=0.02) as calls:
        for coro in (model.ainvoke(PROMPTS[0]), consume_stream()):
            ticks, seconds = await _ticks_during(coro)
            assert seconds > 0.1  # the slowed forwards ran
            assert ticks >= 20, (ticks, seconds)  # a blocked loop would not tick at all
    assert calls


async def _wait_engine_idle(nudger, timeout: float = 5.0) -> None:
    """The Nudger's engine thread holds no run any more (it stays, idle, for the next caller)."""
    t0 = time.perf_counter()
    while not nudger.engine.idle and time.perf_counter() - t0 < timeout:
        await asyncio.sleep(0.01)
    assert nudger.engine.idle


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["llm", "chat"])
async def test_cancelling_astream_stops_the_engine(pair, kind):
    model = (NudgingLLM if kind == "llm" else ChatNudging)(nudger=pair, gamma=0.0, max_tokens=400)
    first = asyncio.Event()

    async def consume():
        async for _ in model.astream(PROMPTS[0]):
            first.set()

    with _counted_forwards(pair.base.model.base_model, delay=0.01) as calls:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _wait_engine_idle(pair)
        n = len(calls)
        await asyncio.sleep(0.1)
        assert len(calls) == n  # nothing runs after cancellation
    # gamma 0 and 400 tokens: a full run needs hundreds of base forwards
    assert n < 50, n


@pytest.mark.asyncio
async def test_cancelling_ainvoke_stops_the_engine(pair):
    chat = ChatNudging(nudger=pair, gamma=0.0, max_tokens=400)
    with _counted_forwards(pair.base.model.base_model, delay=0.01) as calls:
        task = asyncio.create_task(chat.ainvoke(PROMPTS[0]))
        while len(calls) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = time.perf_counter()
        n = len(calls)
        while time.perf_counter() - t0 < 0.3:
            await asyncio.sleep(0.02)
        assert len(calls) <= n + 1  # at most the forward in flight finishes
    assert len(calls) < 50


def test_token_counts_come_from_the_base_tokenizer(pair, llm, chat):
    """Offline: LangChain's default would fetch GPT-2's tokenizer from the hub."""
    text = "Nudging aligns a base model at inference time."
    ids = pair.base.tokenizer.encode(text, add_special_tokens=False)
    for model in (llm, chat):
        assert model.get_token_ids(text) == ids and model.get_num_tokens(text) == len(ids)
    messages = [SystemMessage("Be brief."), HumanMessage(PROMPTS[0])]
    assert chat.get_num_tokens_from_messages(messages) == chat.invoke(messages).usage_metadata["input_tokens"]


class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts, self.ends = [], []

    def on_chat_model_start(self, serialized, messages, *, run_id, **kwargs) -> None:
        self.starts.append((run_id, messages[0][-1].content))

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        self.ends.append((run_id, response.generations[0][0].message.content))


@contextmanager
def _batches(pair):
    """Record the prompt lists that reach Nudger.generate_batch or agenerate_batch while the block runs."""
    seen, real, areal = [], type(pair).generate_batch, type(pair).agenerate_batch

    def recording(self, prompts, *args, **kwargs):
        seen.append(len(prompts))
        return real(self, prompts, *args, **kwargs)

    async def arecording(self, prompts, *args, **kwargs):
        seen.append(len(prompts))
        return await areal(self, prompts, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(pair), "generate_batch", recording)
        mp.setattr(type(pair), "agenerate_batch", arecording)
        yield seen


def test_chat_batch_decodes_together_with_callbacks_per_input(pair, chat, refs):
    runs = _Runs()
    with _batches(pair) as seen:
        out = chat.batch(PROMPTS, config={"callbacks": [runs]})
    assert seen == [len(PROMPTS)]
    assert [m.content for m in out] == [refs[p].text for p in PROMPTS]
    assert [m.usage_metadata["output_tokens"] for m in out] == [refs[p].stats.output_tokens for p in PROMPTS]
    assert [c for _, c in runs.starts] == PROMPTS and [c for _, c in runs.ends] == [m.content for m in out]
    assert [m.id for m in out] == [f"lc_run--{r}" for r, _ in runs.ends] and len({r for r, _ in runs.starts}) == 2
    with _batches(pair) as seen:  # per-input exceptions need LangChain's one call per input
        assert [m.content for m in chat.batch(PROMPTS, return_exceptions=True)] == [refs[p].text for p in PROMPTS]
    assert seen == []


@pytest.mark.asyncio
async def test_chat_abatch_decodes_together(pair, chat, refs):
    runs = _Runs()
    with _batches(pair) as seen:
        out = await chat.abatch(PROMPTS, config={"callbacks": [runs]})
    assert seen == [len(PROMPTS)]
    assert [m.content for m in out] == [refs[p].text for p in PROMPTS]
    assert len(runs.starts) == len(runs.ends) == 2
