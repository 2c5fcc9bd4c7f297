"""A LlamaIndex `FunctionAgent` run by the nudged embedded pair through native tool calling
(`NudgingLLM` is a `FunctionCallingLLM`), with two tools: add and multiply.

    .venv/bin/python examples/llamaindex_function_agent.py ["What is 12 multiplied by 7?"]

Calls are grammar-constrained, so each names a tool with arguments that fit its schema. A 270M base
with a 135M nudger does not reliably decide *when* to call (docs/tools.md, "Other decision signals
measured"), so the agent forces a call on its first turn (`initial_tool_choice="required"`) and
the LLM answers in plain text once a tool result is the last message (`tool_choice="none"`). A
stronger pair can leave both on "auto".
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Sequence

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools import FunctionTool
from llama_index.llms.nudging import NudgingLLM
from nudging import Nudger


def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


def multiply(a: float, b: float) -> float:
    """Multiply two numbers."""
    return a * b


TOOLS = [FunctionTool.from_defaults(fn=add), FunctionTool.from_defaults(fn=multiply)]


class AnswerAfterTools(NudgingLLM):
    """A NudgingLLM that writes a text answer (tool_choice "none") once a tool has answered."""

    def _prepare_chat_with_tools(self, tools: Sequence[Any], user_msg: Any = None, chat_history: list[ChatMessage] | None = None, **kwargs: Any) -> dict[str, Any]:
        if chat_history and chat_history[-1].role == MessageRole.TOOL:
            kwargs["tool_choice"] = "none"
        return super()._prepare_chat_with_tools(tools, user_msg, chat_history, **kwargs)


def build_agent(nudger: Nudger | None = None) -> FunctionAgent:
    """The agent over the embedded pair (or `nudger`)."""
    llm = AnswerAfterTools(nudger or Nudger.default(), gamma=0.4, max_new_tokens=64, stop=["</tool_response>"])
    return FunctionAgent(tools=TOOLS, llm=llm, initial_tool_choice="required", allow_parallel_tool_calls=False, system_prompt="You are a helpful assistant. Use the tools for arithmetic.")


async def run(agent: FunctionAgent, question: str) -> tuple[list[Any], str]:
    """The agent's streamed events and its final answer."""
    handler = agent.run(user_msg=question, max_iterations=4)
    events = [ev async for ev in handler.stream_events()]
    return events, str((await handler).response.content)


def main(question: str = "What is 12 multiplied by 7?", nudger: Nudger | None = None) -> tuple[list[Any], str]:
    """Run the agent on one question; print each tool call and the answer."""
    events, answer = asyncio.run(run(build_agent(nudger), question))
    for ev in events:
        if isinstance(ev, ToolCallResult):
            print(f"{ev.tool_name}({ev.tool_kwargs}) -> {ev.tool_output.content}")
    print("Answer:", answer)
    return events, answer


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "What is 12 multiplied by 7?")
