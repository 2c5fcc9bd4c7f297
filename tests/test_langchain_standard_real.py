"""LangChain's standard tool-calling and structured-output tests (langchain-tests) on the embedded
real pair, nudged (γ 0.4); where the nudged pair fails a test, the same test runs again on the
nudger alone (γ 2) as the reference: a failure both share is content (`ContentFailure`, what the
xfail marks expect), and a test the pair fails where the nudger alone passes fails outright.

Measured (2026-12-01, 64-token budget): the same 15 tests fail for both, each on content: under
"auto" the pair calls magic_function twice (parallel calls are allowed) or answers in text instead
of calling; a joke's string loops ("a cat is a cat and ...") until the budget cuts the call, so no
call parses; json_mode forces an object but its keys come from instructions. The calls they do make
are well formed (tests/test_langchain_tools.py checks the format). Since budget-aware closing
(2026-12-03) the structured-output tests pass on the pair (the looping string is closed in time),
except pydantic v1's.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

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


class ContentFailure(Exception):
    """The nudged pair failed a suite test that the nudger alone fails too."""


_TWICE = pytest.mark.xfail(reason="content: the pair and the nudger alone call the tool twice or answer in text under tool_choice auto", raises=ContentFailure, strict=False)
_LOOPS = pytest.mark.xfail(reason="content: the pair and the nudger alone loop inside the joke's string until the budget cuts the call", raises=ContentFailure, strict=False)
_UNICODE = pytest.mark.xfail(reason="content: the pair and the nudger alone both answer without the Unicode text the test looks for (seen since the 'auto' grammar: an empty answer)", raises=ContentFailure, strict=False)
_KEYS = pytest.mark.xfail(reason="content: json_mode forces an object, its keys come from instructions the 135M nudger does not follow", raises=ContentFailure, strict=False)


@pytest.fixture(scope="module")
def real_chat_nudger(real_pair) -> Nudger:
    return Nudger(*real_pair, config=NudgingConfig(gamma=0.4, max_new_tokens=64))


@pytest.fixture(scope="module")
def reference_nudger(real_pair) -> Nudger:
    """The nudger alone (γ 2) on the same pair: run only where the nudged pair fails."""
    return Nudger(*real_pair, config=NudgingConfig(gamma=2.0, max_new_tokens=64))


def against_reference(test: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of a suite test that runs it on the nudged pair and, only where that fails, on the
    nudger alone: both failing raises ContentFailure (from the nudged failure); the nudger alone
    passing fails the test, whatever its xfail mark says."""

    def on_reference(self: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "model": kwargs["model"].model_copy(update={"nudger": self.reference})}

    def verdict(nudged: Exception, reference: Exception | None) -> None:
        if reference is None:
            pytest.fail(f"the nudged pair fails where the nudger alone passes: {nudged!r}")
        raise ContentFailure(f"the nudger alone fails too: {reference!r}") from nudged

    if inspect.iscoroutinefunction(test):

        @functools.wraps(test, updated=())
        async def copy(self: Any, **kwargs: Any) -> None:
            try:
                return await test(self, **kwargs)
            except Exception as exc:
                nudged = exc
            if "model" not in kwargs:
                raise nudged
            try:
                await test(self, **on_reference(self, kwargs))
            except Exception as reference:
                verdict(nudged, reference)
            verdict(nudged, None)

    else:

        @functools.wraps(test, updated=())
        def copy(self: Any, **kwargs: Any) -> None:
            try:
                return test(self, **kwargs)
            except Exception as exc:
                nudged = exc
            if "model" not in kwargs:
                raise nudged
            try:
                test(self, **on_reference(self, kwargs))
            except Exception as reference:
                verdict(nudged, reference)
            verdict(nudged, None)

    copy.pytestmark = list(getattr(test, "pytestmark", []))  # type: ignore[attr-defined]
    return copy


def suite(name: str, *marks: pytest.MarkDecorator) -> Callable[..., Any]:
    return marked(against_reference(getattr(Suite, name)), *marks)


class TestChatNudgingRealTools(ChatModelTests):
    """The suite's tool and structured-output tests only (the rest run on the tiny pair)."""

    @pytest.fixture(autouse=True)
    def _real(self, real_chat_nudger: Nudger, reference_nudger: Nudger) -> None:
        self.nudger, self.reference = real_chat_nudger, reference_nudger

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

    test_tool_calling = suite("test_tool_calling", _TWICE)
    test_tool_calling_async = suite("test_tool_calling_async", _TWICE)
    test_bind_runnables_as_tools = suite("test_bind_runnables_as_tools")
    test_tool_message_histories_string_content = suite("test_tool_message_histories_string_content")
    test_tool_message_histories_list_content = suite("test_tool_message_histories_list_content")
    test_tool_choice = suite("test_tool_choice")
    test_tool_calling_with_no_arguments = suite("test_tool_calling_with_no_arguments", _TWICE)
    test_tool_message_error_status = suite("test_tool_message_error_status")
    test_structured_few_shot_examples = suite("test_structured_few_shot_examples")
    test_structured_output = suite("test_structured_output")
    test_structured_output_async = suite("test_structured_output_async")
    test_structured_output_pydantic_2_v1 = suite("test_structured_output_pydantic_2_v1", _LOOPS)
    test_structured_output_optional_param = suite("test_structured_output_optional_param")
    test_json_mode = suite("test_json_mode", _KEYS)
    test_agent_loop = suite("test_agent_loop", _TWICE)
    test_unicode_tool_call_integration = suite("test_unicode_tool_call_integration", _UNICODE)
