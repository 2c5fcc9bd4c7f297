"""The facade: `Nudger` (generate / stream / batch) over a base and a nudger backend, and the
async bridges that the LangChain and LlamaIndex integrations share."""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Sequence

from .backends import Backend, LocalModel, fast_local
from .config import NudgingConfig
from .decoding import Engine, Run, decode_all
from .errors import InputError
from .policies import NudgingPolicy, TopProbPolicy
from .prompts import Prompt, build_prompts
from .results import Result, StreamEvent

# The embedded pair's tool settings (docs/tools.md, benchmarks/tools/grounded.py): under "auto" every
# answer first writes the call it would make, written by the nudger alone (call_gamma 2: its calls are
# better, BFCL simple_python "required" 43% vs the base's 18%), and keeps it only where it is grounded in
# the conversation. On BFCL items 100-159 no threshold on the nudger's opener probability above 0 does
# better (balanced rates), so call_threshold is 0: grounding alone decides.
EMBEDDED_TOOL_SETTINGS: dict[str, Any] = {"call_threshold": 0.0, "call_gamma": 2.0, "grounded_calls": True}


class Stream:
    """Iterator of StreamEvents; `.result` is set once it is exhausted. `close()` cancels and frees caches."""

    def __init__(self, gen: Iterator[StreamEvent | Result]) -> None:
        self._gen = gen
        self.result: Result | None = None

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> StreamEvent:
        item = next(self._gen)
        if isinstance(item, Result):
            self.result = item
            raise StopIteration
        return item

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class Nudger:
    """A base model aligned at inference time by a small chat model (the nudger).

    Safe to share between threads and coroutines: every generation is decoded by the Nudger's one
    `engine` thread, concurrent ones together in shared forwards, each with its solo greedy answer."""

    def __init__(self, base: Any, base_tokenizer: Any, nudger: Any, nudger_tokenizer: Any, config: NudgingConfig | None = None, policy: NudgingPolicy | None = None) -> None:
        """Models are loaded transformers models (with their tokenizers) or ready backends
        (e.g. `RemoteModel`; their tokenizer argument is ignored)."""
        self.base = base if isinstance(base, Backend) else LocalModel(base, base_tokenizer)
        self.nudger = nudger if isinstance(nudger, Backend) else LocalModel(nudger, nudger_tokenizer)
        self.config = config or NudgingConfig()
        self.policy = policy
        self.engine = Engine()  # the one owner of both models' caches
        weakref.finalize(self, self.engine.orphan)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, base: Any, nudger: Any, *, base_tokenizer: Any = None, nudger_tokenizer: Any = None, device_map: Any = None, dtype: Any = "auto", config: NudgingConfig | None = None, cache_dir: str | None = None, compile: bool | None = None) -> Nudger:
        """Load both models: HF ids, local directories, .gguf files, already-loaded models, or
        `http://host:port/v1#model-name` for a model behind an OpenAI-compatible completions server
        with logprobs (its tokenizer: `*_tokenizer=`, else the served model name as an HF id/folder).

        compile: local models get static KV caches and compiled forwards (README "GPU fast path");
        None: on CUDA when its startup self-check passes, off on the CPU. A model that fails the
        check keeps the dynamic cache (the reason is logged).

        The embedded nudger without a `config` comes with its measured tool settings
        (EMBEDDED_TOOL_SETTINGS: under "auto" a call is tried on every answer and kept where it is
        grounded, and `call_gamma` 2: the nudger writes the calls)."""
        from .loading import load_model, load_remote
        from .loading.models import SMOLLM2_GGUF

        def load(spec: Any, tok: Any) -> tuple[Any, Any]:
            if isinstance(spec, str) and spec.startswith(("http://", "https://")):
                return load_remote(spec, tokenizer=tok, cache_dir=cache_dir), None
            model, tokenizer = load_model(spec, tokenizer=tok, device_map=device_map, dtype=dtype, cache_dir=cache_dir)
            return fast_local(model, tokenizer, compile), None

        b, bt = load(base, base_tokenizer)
        n, nt = load(nudger, nudger_tokenizer)
        pair = cls(b, bt, n, nt, config=config)
        if config is None and pair.nudger.name == Path(SMOLLM2_GGUF).stem:  # the embedded nudger, however named
            pair.config = pair.config.merged(**EMBEDDED_TOOL_SETTINGS)
        return pair

    @classmethod
    def default(cls, *, device_map: Any = None, dtype: Any = "auto", config: NudgingConfig | None = None) -> Nudger:
        """The embedded offline pair: gemma-3-270m (base) nudged by SmolLM2-135M-Instruct."""
        return cls.from_pretrained("embedded:base", "embedded:nudger", device_map=device_map, dtype=dtype, config=config)

    # -- generation ------------------------------------------------------------------------
    def _config(self, config: NudgingConfig | None, overrides: dict[str, Any]) -> NudgingConfig:
        return (config or self.config).merged(**overrides)

    def _run(self, prompt: Prompt, config: NudgingConfig | None, cancel: threading.Event | None, overrides: dict[str, Any]) -> Run:
        cfg = self._config(config, overrides)
        policy = cfg.policy if cfg.policy is not None else self.policy
        policy = policy if policy is not None else TopProbPolicy(cfg.gamma)
        return Run(self.base, self.nudger, policy, prompt, cfg, cancel)

    def run(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Run:
        """A generation not yet started, for a driver of your own: `BatchDecoder.add` it, or iterate
        `.events()` (validates the prompt and config now)."""
        return self._run(prompt, config, cancel, overrides)

    def prompt_ids(self, prompt: Prompt, config: NudgingConfig | None = None) -> dict[str, list[int]]:
        """The ids each model is conditioned on for `prompt` (what usage and context limits count)."""
        _, (base_ids, nudger_ids) = build_prompts(self.base, self.nudger, prompt, config or self.config)
        return {"base": base_ids, "nudger": nudger_ids}

    def generate(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Result:
        """Nudged answer to a prompt (a string or chat messages). Keyword overrides: any NudgingConfig field."""
        stream = Stream(self._events([self._run(prompt, config, cancel, overrides)], single=True))
        for _ in stream:
            pass
        assert stream.result is not None
        return stream.result

    def stream(self, prompt: Prompt, config: NudgingConfig | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Stream:
        """Like generate, but yields StreamEvents as text is accepted; `.result` holds the Result at the end."""
        return Stream(self._events([self._run(prompt, config, cancel, overrides)], single=True))

    def generate_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> list[Result]:
        """Answers for several prompts, decoded together in shared forwards of each model, each row
        with its own nudge schedule (and its own config when `config` is a list). Greedy rows give
        their `generate` output (README "Batching" says what sampled rows promise)."""
        results: list[Result | None] = [None] * len(prompts)
        for i, item in self.stream_batch(prompts, config, cancel=cancel, **overrides):
            if isinstance(item, Result):
                results[i] = item
        return results  # type: ignore[return-value]

    def stream_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, *, cancel: threading.Event | None = None, **overrides: Any) -> Iterator[tuple[int, StreamEvent | Result]]:
        """Decode prompts together; yields (prompt index, StreamEvent) as text is accepted, and
        (index, Result) when that row ends."""
        return self._events(self._runs(prompts, config, cancel, overrides))  # bad input fails before decoding

    def _runs(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None, cancel: threading.Event | None, overrides: dict[str, Any]) -> list[Run]:
        configs = list(config) if isinstance(config, Sequence) else [config] * len(prompts)
        if len(configs) != len(prompts):
            raise InputError(f"got {len(configs)} configs for {len(prompts)} prompts")
        return [self._run(p, c, cancel, overrides) for p, c in zip(prompts, configs)]

    def _events(self, runs: list[Run], single: bool = False) -> Iterator[Any]:
        """Decode runs on the engine thread, beside every other caller's; yields (index, event or
        Result), or just the item when `single`. A failed row raises its error once the others are
        stopped; closing the iterator stops them all and frees their caches."""
        if self.engine.on_thread():  # called back from inside a step: decode right here
            for i, item in decode_all(runs):
                yield item if single else (i, item)
            return
        box: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        tickets = self.engine.submit([(run, _tagged(box.put, i)) for i, run in enumerate(runs)])
        left = len(runs)
        try:
            while left:
                i, item = box.get()
                if isinstance(item, BaseException):
                    raise item
                left -= isinstance(item, Result)
                yield item if single else (i, item)
        finally:
            for t in tickets:
                t.cancel(wait=False)
            for t in tickets:
                t.cancel()  # returns once its caches are freed (at once for ended ones)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the backends hold open (a remote model's request threads and connections)."""
        for lm in (self.base, self.nudger):
            close = getattr(lm, "close", None)  # Backend has no close(): local models hold nothing to release
            if close is not None:
                close()

    def __enter__(self) -> Nudger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async: runs are built on worker threads and decoded by the engine; the loop only awaits --
    async def agenerate(self, prompt: Prompt, config: NudgingConfig | None = None, **overrides: Any) -> Result:
        """`generate` awaited; cancelling the awaiting task stops the generation."""
        return (await self.agenerate_batch([prompt], config, **overrides))[0]

    async def agenerate_batch(self, prompts: Sequence[Prompt], config: NudgingConfig | Sequence[NudgingConfig] | None = None, **overrides: Any) -> list[Result]:
        """`generate_batch` awaited (its runs are built on a worker thread: prompts, grammars);
        cancelling the awaiting task stops every row."""
        runs = await asyncio.to_thread(self._runs, list(prompts), config, None, overrides)
        results: list[Result | None] = [None] * len(runs)
        async for i, item in _Awaited(self.engine, runs):
            if isinstance(item, Result):
                results[i] = item
        return results  # type: ignore[return-value]

    def astream(self, prompt: Prompt, config: NudgingConfig | None = None, **overrides: Any) -> AsyncIterator[StreamEvent | Result]:
        """`stream` as an async iterator of StreamEvents, then the Result. Bad prompts and settings
        raise here, at call time; the run itself (grammar compile, tokenizer build) is built on a
        worker thread when iteration starts, so the loop never waits on it. Leaving early or
        cancelling the task stops generation and frees both caches without blocking the loop."""
        build_prompts(self.base, self.nudger, prompt, self._config(config, overrides))
        return self._astream(prompt, config, overrides)

    async def _astream(self, prompt: Prompt, config: NudgingConfig | None, overrides: dict[str, Any]) -> AsyncIterator[StreamEvent | Result]:
        run = await asyncio.to_thread(self._run, prompt, config, None, overrides)
        feed = _Awaited(self.engine, [run])
        try:
            async for _, item in feed:
                yield item
        finally:
            feed.stop()


def _tagged(put: Callable[[tuple[int, Any]], None], i: int) -> Callable[[Any], None]:
    return lambda item: put((i, item))


class _Awaited:
    """(index, item) pairs of runs decoded by the engine, awaited on the running event loop; a
    failed row raises once the others are stopped, leaving early (or cancellation) stops them all."""

    def __init__(self, engine: Engine, runs: list[Run]) -> None:
        self._engine, self._runs, self._left = engine, runs, len(runs)
        self._tickets: list[Any] = []
        self._queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    def __aiter__(self) -> _Awaited:
        loop = asyncio.get_running_loop()
        put = self._queue.put_nowait

        def sink(i: int) -> Callable[[Any], None]:
            return lambda item: loop.call_soon_threadsafe(put, (i, item))  # raises once the loop is closed

        self._tickets = self._engine.submit([(run, sink(i)) for i, run in enumerate(self._runs)])
        return self

    async def __anext__(self) -> tuple[int, Any]:
        if not self._left:
            raise StopAsyncIteration
        try:
            i, item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
        except BaseException:
            self.stop()
            raise
        self._left -= isinstance(item, Result)
        return i, item

    def stop(self) -> None:
        for t in self._tickets:
            t.cancel(wait=False)
