"""NudgingLLM as a LlamaIndex FunctionCallingLLM on the tiny pairs: formats, never content."""


import pytest
from llama_index.core.tools import FunctionTool
from llama_index.llms.nudging import NudgingLLM
from nudging import Nudger
from pydantic import BaseModel, Field


class AddArgs(BaseModel):
    a: int = Field(ge=0, le=9)  # bounded: random tiny weights would otherwise write digits until the budget
    b: int = Field(ge=0, le=9)


def add(a: int, b: int) -> int:
    """Add two small integers."""
    return a + b


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=8)
    ok: bool


@pytest.fixture
def llm(pair: Nudger) -> NudgingLLM:
    return NudgingLLM(pair, gamma=0.5, max_new_tokens=120)


def test_is_function_calling(llm: NudgingLLM):
    assert llm.metadata.is_function_calling_model


def test_chat_with_tools_and_tool_selection(llm: NudgingLLM):
    tool = FunctionTool.from_defaults(add, fn_schema=AddArgs)
    res = llm.chat_with_tools([tool], user_msg="Add 2 and 3.", tool_required=True)
    (sel,) = llm.get_tool_calls_from_response(res)
    assert sel.tool_name == "add" and set(sel.tool_kwargs) == {"a", "b"} and sel.tool_id.startswith("call_")
    assert tool.call(**sel.tool_kwargs).raw_output == sel.tool_kwargs["a"] + sel.tool_kwargs["b"]
    chunks = list(llm.stream_chat_with_tools([tool], user_msg="Add 2 and 3.", tool_required=True))
    assert all(c.delta == "" for c in chunks)  # the call's text never streams as content
    assert [s.tool_name for s in llm.get_tool_calls_from_response(chunks[-1])] == ["add"]


def test_structured_predict(llm: NudgingLLM):
    from llama_index.core.prompts import PromptTemplate

    person = llm.structured_predict(Person, PromptTemplate("Describe {who}."), who="a person")
    assert isinstance(person, Person)


def test_openai_finish_reasons(llm: NudgingLLM):
    """additional_kwargs["finish_reason"] is OpenAI's word; a cut call is reported, never selected."""
    tool = FunctionTool.from_defaults(add, fn_schema=AddArgs)
    res = llm.chat_with_tools([tool], user_msg="Add 2 and 3.", tool_required=True)
    assert res.additional_kwargs["finish_reason"] == "tool_calls" and res.raw["finish_reason"] == "tool_calls"
    cut = llm.chat_with_tools([tool], user_msg="Add 2 and 3.", tool_required=True, max_new_tokens=4)
    assert cut.additional_kwargs["finish_reason"] == "length" and cut.additional_kwargs["invalid_tool_calls"]
    assert llm.get_tool_calls_from_response(cut, error_on_no_tool_call=False) == []
