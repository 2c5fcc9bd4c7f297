"""The LlamaIndex examples end to end on the embedded real pair (gemma-3-270m + SmolLM2-135M):
retrieved nodes reach both models' prompts, and the ReActAgent calls a tool from the model's own
text and then finishes or stops cleanly at max iterations."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from llama_index.core import Settings
from llama_index.core.agent.workflow import AgentStream, ToolCallResult
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.llms.nudging import NudgingLLM
from nudging import Nudger, NudgingConfig
from nudging.nudger import EMBEDDED_TOOL_SETTINGS
from workflows.errors import WorkflowRuntimeError

pytestmark = pytest.mark.real
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def real_nudger(real_pair) -> Nudger:
    return Nudger(*real_pair, config=NudgingConfig(**EMBEDDED_TOOL_SETTINGS))  # as Nudger.default() comes


class _Chats(BaseEventHandler):
    """Every LLM chat response, through LlamaIndex's own instrumentation."""

    responses: list = []

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, LLMChatEndEvent):
            self.responses.append(event.response)


@pytest.fixture
def chats():
    handler = _Chats(responses=[])
    get_dispatcher().add_event_handler(handler)
    yield handler.responses
    get_dispatcher().event_handlers.remove(handler)


def test_metadata_is_the_real_context_window(real_nudger):
    meta = NudgingLLM(real_nudger).metadata
    # gemma-3-270m: 32768 positions; SmolLM2-135M: 8192. A prompt must fit both.
    assert (real_nudger.base.context_window, real_nudger.nudger.context_window) == (32768, 8192)
    assert meta.context_window == 8192 and meta.is_chat_model


def test_rag_retrieved_nodes_reach_the_prompt(real_nudger, chats):
    saved = Settings._llm, Settings._embed_model
    try:
        Settings.llm = NudgingLLM(real_nudger, max_new_tokens=24, stop=["\n\n"])
        response = _example("llamaindex_rag").query_engine().query("How long does the ferry crossing to Gull Island take?")
        streamed = "".join(response.response_gen)
    finally:
        Settings._llm, Settings._embed_model = saved
    assert response.source_nodes[0].metadata["file_name"] == "ferry_timetable.md"
    (answer,) = chats
    prompts = answer.additional_kwargs["prompts"]
    for node in response.source_nodes:
        assert node.get_content() in prompts["base"] and node.get_content() in prompts["nudger"]
    assert streamed and streamed == answer.message.content
    assert "".join(s["text"] for s in answer.additional_kwargs["spans"]) == streamed


def test_react_agent_calls_a_tool(real_nudger, chats):
    agent_example = _example("llamaindex_agent")
    agent = agent_example.build_agent(agent_example.react_llm(real_nudger))
    tools = {"add": agent_example.add, "multiply": agent_example.multiply}

    async def run():
        handler = agent.run(user_msg="What is 12 multiplied by 7?", max_iterations=4)
        events = [ev async for ev in handler.stream_events()]
        try:
            return events, (await handler).response.content
        except WorkflowRuntimeError as exc:
            return events, exc

    events, outcome = asyncio.run(run())
    calls = [ev for ev in events if isinstance(ev, ToolCallResult)]
    assert calls, [r.message.content for r in chats]
    first = calls[0]
    # the call comes from the model's own text, parsed by LlamaIndex's ReAct parser
    assert re.search(rf"Action: {first.tool_name}\s*\nAction Input: ", chats[0].message.content)
    assert first.tool_name in tools and not first.tool_output.is_error
    assert first.tool_output.content == str(tools[first.tool_name](**first.tool_kwargs))
    # the agent edits the final message in place (drops "Answer:"); the spans keep what was written
    streamed = "".join(ev.delta for ev in events if isinstance(ev, AgentStream))
    assert streamed == "".join(s["text"] for r in chats for s in r.additional_kwargs["spans"])
    if isinstance(outcome, WorkflowRuntimeError):
        assert "Max iterations" in str(outcome)
    else:
        assert outcome.strip()


def test_function_agent_example_calls_a_tool_natively_and_answers(real_nudger, chats, capsys):
    example = _example("llamaindex_function_agent")
    events, answer = example.main("Multiply 12 by 7.", nudger=real_nudger)
    calls = [ev for ev in events if isinstance(ev, ToolCallResult)]
    assert calls, [r.message.content for r in chats]
    tools = {"add": example.add, "multiply": example.multiply}
    first = chats[0].message.additional_kwargs["tool_calls"]  # a native call, parsed by the engine
    assert first[0]["function"]["name"] == calls[0].tool_name
    for call in calls:  # the tool ran on the parsed arguments
        assert call.tool_name in tools and not call.tool_output.is_error
        assert call.tool_output.content == str(tools[call.tool_name](**call.tool_kwargs))
    assert not chats[-1].message.additional_kwargs.get("tool_calls") and answer.strip()
    assert f"{calls[0].tool_name}({calls[0].tool_kwargs}) -> " in capsys.readouterr().out
