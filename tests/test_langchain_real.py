"""The LangChain examples end to end on the real embedded pair: the RAG chain puts the retrieved
notes into both models' prompts, and the ReAct agent runs a real tool and terminates. Nothing here
asserts that a 270M model is right."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from nudging import Nudger, NudgingConfig
from nudging.nudger import EMBEDDED_TOOL_SETTINGS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # langchain tools resolve their annotations through the module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def default_is_shared(real_pair, monkeypatch) -> Nudger:
    """Nudger.default() in the examples returns the session's already-loaded real pair."""
    nudger = Nudger(*real_pair, config=NudgingConfig(**EMBEDDED_TOOL_SETTINGS))  # as Nudger.default() comes
    monkeypatch.setattr(Nudger, "default", classmethod(lambda cls, **kwargs: nudger))
    return nudger


def test_rag_example_answers_from_the_retrieved_notes(default_is_shared, capsys):
    rag = _example("langchain_rag")
    out = rag.main("When can I visit the observatory, and what does a ticket cost?")
    assert out["docs"][0].metadata["source"] == "observatory.md"  # retrieval, not generation
    answer = out["answer"]
    assert answer.content.strip()
    prompts = answer.response_metadata["prompts"]
    for doc in out["docs"]:
        assert doc.page_content.strip() in prompts["base"]
        assert doc.page_content.strip() in prompts["nudger"]
    assert "\n\n" not in answer.content  # the example's stop string
    printed = capsys.readouterr().out
    assert "Sources: observatory.md" in printed


def test_react_agent_example_calls_a_tool_and_terminates(default_is_shared, capsys):
    agent = _example("langchain_react_agent")
    result = agent.main("What is 17 times 23?")
    steps = result["intermediate_steps"]
    tools = {t.name: t for t in agent.TOOLS}
    called = [(a, obs) for a, obs in steps if a.tool in tools]
    assert called, f"no tool was called: {[a.log for a, _ in steps]}"
    for action, observation in called:  # each observation is the tool's own output for the model's input
        assert observation == tools[action.tool].invoke(action.tool_input)
    assert len(steps) <= 3 and isinstance(result["output"], str)  # it stopped within max_iterations
    assert all("\nObservation" not in a.log for a, _ in steps)  # the stop string is cut from every step
    printed = capsys.readouterr().out
    assert f"{called[0][0].tool}({called[0][0].tool_input!r}) -> " in printed


def test_create_agent_example_calls_a_tool_natively_and_answers(default_is_shared, capsys):
    agent = _example("langchain_tool_agent")
    from langchain_core.messages import AIMessage, ToolMessage

    state = agent.main("How much is 20 USD in EUR?")
    messages = state["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert calls and len(results) == len(calls), [m.content for m in messages]
    tools = {t.name: t for t in agent.TOOLS}
    for call, result in zip(calls, results):  # the tool ran on the parsed arguments: its own output came back
        assert result.tool_call_id == call["id"] and result.status == "success"
        assert result.content == tools[call["name"]].invoke(call["args"])
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content.strip()
    assert f"{calls[0]['name']}({calls[0]['args']})" in capsys.readouterr().out
