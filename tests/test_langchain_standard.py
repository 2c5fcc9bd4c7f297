"""LangChain's own standard tests (langchain-tests) against ChatNudging on a tiny random pair.

langchain-tests has suites for chat models only; NudgingLLM is covered in test_langchain_models.py.
Features we do not have are switched off through the suite's flags; tool calling and structured
output are on (grammar-constrained); the tests whose content depends on what the model chooses
(whether to call under "auto", which keys json_mode writes) xfail on random weights.
"""

from __future__ import annotations

import pytest
from langchain_nudging import ChatNudging
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from nudging import Nudger, NudgingConfig
from suite_marks import marked

pytestmark = [
    # the cross-family tiny pair (gemma-3 + SmolLM2 tokenizers), shared with the rest of the suite
    pytest.mark.parametrize("pair", ["cross"], indirect=True),
    # langchain-tests' async tests carry no asyncio mark of their own (its projects run asyncio_mode=auto);
    # pytest-asyncio ignores the mark on the sync ones, and says so: that notice is silenced.
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio' but it is not an async function"),
]


class _Params:
    nudger: Nudger

    @pytest.fixture(autouse=True)
    def _tiny_nudger(self, pair: Nudger) -> None:
        # Small budget in the engine's defaults (the suite passes its own max_tokens to some
        # constructors): ~40 calls stay cheap; at gamma 0.5 both tiny models write.
        config = NudgingConfig(max_new_tokens=48, gamma=0.5)
        self.nudger = Nudger(pair.base.model, pair.base.tokenizer, pair.nudger.model, pair.nudger.tokenizer, config=config)

    @property
    def chat_model_class(self) -> type[ChatNudging]:
        return ChatNudging

    @property
    def chat_model_params(self) -> dict:
        return {"nudger": self.nudger}

    # Tool calling and structured output are real (grammar-constrained); the budget leaves room for a call.
    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    # Switched off, each for its reason:
    @property
    def supports_image_inputs(self) -> bool:
        return False  # both models are text-only; image blocks are refused

    @property
    def supports_model_override(self) -> bool:
        return False  # one Nudger holds both models; there is no model name to switch per call

    # Switched on: usage counts come from the engine's stats (base-view ids).
    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatNudgingUnit(_Params, ChatModelUnitTests):
    pass


# Random tiny weights cannot choose the suite's expected arguments ({"input": 3}, a joke's text)
# nor end an unbounded string within the budget: these fail on content, never on format (the
# calls they make are well formed: tests/test_langchain_tools.py checks that).
_CONTENT = pytest.mark.xfail(reason="random tiny weights: wrong or unfinished content, format checked elsewhere", strict=False)


class TestChatNudgingIntegration(_Params, ChatModelIntegrationTests):
    test_tool_calling = marked(ChatModelIntegrationTests.test_tool_calling, _CONTENT)
    test_tool_calling_async = marked(ChatModelIntegrationTests.test_tool_calling_async, _CONTENT)
    # forced calls and structured output pass as the suite has them: the grammar forces the format
    # and budget-aware closing ends every object within max_tokens, whatever the weights say
    test_structured_output_pydantic_2_v1 = marked(ChatModelIntegrationTests.test_structured_output_pydantic_2_v1, _CONTENT)
    test_unicode_tool_call_integration = marked(ChatModelIntegrationTests.test_unicode_tool_call_integration, _CONTENT)
    test_agent_loop = marked(ChatModelIntegrationTests.test_agent_loop, _CONTENT)
    test_json_mode = marked(ChatModelIntegrationTests.test_json_mode, _CONTENT)  # JSON is forced; the keys come from instructions
