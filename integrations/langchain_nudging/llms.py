"""NudgingLLM: the nudged pair as a LangChain text LLM (string prompt in, answer text out)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from nudging import Result

from ._common import NudgingParams, result_metadata


class NudgingLLM(NudgingParams, BaseLLM):
    """A base model that writes most of the answer, nudged by a small chat model where it is uncertain.

    The prompt is the user turn: the nudger sees it in its chat template, the base in its plain
    question/answer template. For text the base should continue verbatim (a ReAct transcript),
    pass `model_kwargs={"base_template": BaseTemplate("", "", "")}`. `generation_info` carries `spans` (text with its source, as dicts), `stats` (counts,
    nudge share, stop reason) and the exact `prompts`. Token counts are ids of the base model's view:
    `stats["prompt_tokens"]` counts the base prompt, `stats["output_tokens"]` the answer.

    Example:
        ```python
        llm = NudgingLLM.default(gamma=0.4, max_tokens=64)
        llm.invoke("Give three tips for sleep.")
        ```
    """

    @property
    def _llm_type(self) -> str:
        return "nudging"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self.nudging_params

    def _generate(self, prompts: list[str], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        results = self.nudger.generate_batch(prompts, **self.engine_overrides(stop, kwargs))
        return LLMResult(
            generations=[[Generation(text=r.text, generation_info=result_metadata(r))] for r in results],
            llm_output={"model_name": self.model_name},
        )

    async def _agenerate(self, prompts: list[str], stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        results = await self.nudger.agenerate_batch(prompts, **self.engine_overrides(stop, kwargs))
        return LLMResult(
            generations=[[Generation(text=r.text, generation_info=result_metadata(r))] for r in results],
            llm_output={"model_name": self.model_name},
        )

    def _stream(self, prompt: str, stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        # BaseLLM leaves on_llm_new_token to the model; the final empty chunk carries the metadata.
        with self.nudger.stream(prompt, **self.engine_overrides(stop, kwargs)) as stream:
            for event in stream:
                chunk = GenerationChunk(text=event.text)
                if run_manager:
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
        assert stream.result is not None
        yield GenerationChunk(text="", generation_info=result_metadata(stream.result))

    async def _astream(self, prompt: str, stop: list[str] | None = None, run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        async for item in self.nudger.astream(prompt, **self.engine_overrides(stop, kwargs)):
            if isinstance(item, Result):
                yield GenerationChunk(text="", generation_info=result_metadata(item))
                continue
            chunk = GenerationChunk(text=item.text)
            if run_manager:
                await run_manager.on_llm_new_token(item.text, chunk=chunk)
            yield chunk
