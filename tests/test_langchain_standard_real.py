"""LangChain's standard tool-calling and structured-output tests (langchain-tests) on the embedded
real pair, nudged (γ 0.4) and, as the reference, the nudger alone (γ 2): a test the pair fails must
fail for the nudger alone too, on content, never on format.

Measured (2026-12-01, 64-token budget): the same 15 tests fail for both, each on content: under
"auto" the pair calls magic_function twice (parallel calls are allowed) or answers in text instead
of calling; a joke's string loops ("a cat is a cat and ...") until the budget cuts the call, so no
call parses; json_mode forces an object but its keys come from instructions. The calls they do make
are well formed (tests/test_langchain_tools.py checks the format).
"""

from __future__ import annotations

import pytest
from langchain_nudging import ChatNudging
from langchain_tests.integration_tests import ChatModelIntegrationTests as Suite
from langchain_tests.unit_tests.chat_models import ChatModelTests
from nudging import Nudger, NudgingConfig
from suite_marks import marked

pytestmark = [
    pytest.mark.real,
    pytest.mark.slow,
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio' but it is not an async function"),
]


_TWICE = pytest.mark.xfail(reason="content: the pair and the nudger alone call the tool twice or answer in text under tool_choice auto", strict=False)
_LOOPS = pytest.mark.xfail(reason="content: the pair and the nudger alone loop inside the joke's string until the budget cuts the call", strict=False)
_KEYS = pytest.mark.xfail(reason="content: json_mode forces an object, its keys come from instructions the 135M nudger does not follow", strict=False)


@pytest.fixture(scope="module", params=[0.4, 2.0], ids=["nudged", "nudger-only"])
def real_chat_nudger(request, real_pair) -> Nudger:
    return Nudger(*real_pair, config=NudgingConfig(gamma=request.param, max_new_tokens=64))


class TestChatNudgingRealTools(ChatModelTests):
    """The suite's tool and structured-output tests only (the rest run on the tiny pair)."""

    @pytest.fixture(autouse=True)
    def _real(self, real_chat_nudger: Nudger) -> None:
        self.nudger = real_chat_nudger

    @property
    def chat_model_class(self) -> type[ChatNudging]:
        return ChatNudging

    @property
    def chat_model_params(self) -> dict:
        return {"nudger": self.nudger, "max_tokens": 64}

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

    test_tool_calling = marked(Suite.test_tool_calling, _TWICE)
    test_tool_calling_async = marked(Suite.test_tool_calling_async, _TWICE)
    test_bind_runnables_as_tools = Suite.test_bind_runnables_as_tools
    test_tool_message_histories_string_content = Suite.test_tool_message_histories_string_content
    test_tool_message_histories_list_content = Suite.test_tool_message_histories_list_content
    test_tool_choice = Suite.test_tool_choice
    test_tool_calling_with_no_arguments = marked(Suite.test_tool_calling_with_no_arguments, _TWICE)
    test_tool_message_error_status = Suite.test_tool_message_error_status
    test_structured_few_shot_examples = Suite.test_structured_few_shot_examples
    test_structured_output = marked(Suite.test_structured_output, _LOOPS)
    test_structured_output_async = marked(Suite.test_structured_output_async, _LOOPS)
    test_structured_output_pydantic_2_v1 = marked(Suite.test_structured_output_pydantic_2_v1, _LOOPS)
    test_structured_output_optional_param = marked(Suite.test_structured_output_optional_param, _LOOPS)
    test_json_mode = marked(Suite.test_json_mode, _KEYS)
    test_agent_loop = marked(Suite.test_agent_loop, _TWICE)
    test_unicode_tool_call_integration = Suite.test_unicode_tool_call_integration
