"""A LlamaIndex `FunctionAgent` run by the nudged embedded pair through native tool calling
(`NudgingLLM` is a `FunctionCallingLLM`), with two tools: add and multiply.

    .venv/bin/python examples/llamaindex_function_agent.py ["Multiply 12 by 7."]

The LLM decides when to call (tool_choice "auto", nothing forced): the embedded pair writes the call
it would make and keeps it only where its arguments come from the conversation, else it answers in
text; once the tool's result is in, the same call would repeat one the conversation holds, so the
answer is text (`grounded_calls`, docs/tools.md). Calls are grammar-constrained, so each names a
tool with arguments that fit its schema. The 135M nudger picks the right tool where the request
names it ("Multiply 12 by 7."); asked "What is 12 multiplied by 7?" it calls add(12, 7).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
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


def build_agent(nudger: Nudger | None = None) -> FunctionAgent:
    """The agent over the embedded pair (or `nudger`)."""
    llm = NudgingLLM(nudger or Nudger.default(), gamma=0.4, max_new_tokens=64, stop=["</tool_response>"])
    return FunctionAgent(tools=TOOLS, llm=llm, allow_parallel_tool_calls=False, system_prompt="You are a helpful assistant. Use the tools for arithmetic.")


async def run(agent: FunctionAgent, question: str) -> tuple[list[Any], str]:
    """The agent's streamed events and its final answer."""
    handler = agent.run(user_msg=question, max_iterations=4)
    events = [ev async for ev in handler.stream_events()]
    return events, str((await handler).response.content)


def main(question: str = "Multiply 12 by 7.", nudger: Nudger | None = None) -> tuple[list[Any], str]:
    """Run the agent on one question; print each tool call and the answer."""
    events, answer = asyncio.run(run(build_agent(nudger), question))
    for ev in events:
        if isinstance(ev, ToolCallResult):
            print(f"{ev.tool_name}({ev.tool_kwargs}) -> {ev.tool_output.content}")
    print("Answer:", answer)
    return events, answer


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Multiply 12 by 7.")
