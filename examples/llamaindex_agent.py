"""A LlamaIndex ReActAgent with two tools, driven by a nudged base model on CPU.

The embedded pair is tiny (gemma-3-270m base, SmolLM2-135M-Instruct nudger), so the setup is chosen
to let each model do what it can:
- a short ReAct header with one worked example per tool, instead of LlamaIndex's long default;
- the base sees the conversation as a bare ReAct transcript (empty question/answer prefixes), so
  continuing it in the Thought/Action/Action Input format is plain next-token prediction;
- gamma 0.9: the base is > 0.95 sure of every format token and hesitates (p 0.5-0.8) at the tool
  name and at some arguments, so there the nudger writes: the base supplies the format, the nudger
  the decision. (At gamma 0.4 the base copies the first example's tool; the nudger alone ignores the
  format and answers from memory, e.g. "12 multiplied by 7 is 78.")
- stop at "Observation:" (the tool writes that, not the model) and at a blank line.

    python examples/llamaindex_agent.py "What is 12 multiplied by 7?"
"""

from __future__ import annotations

import asyncio
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llama_index.core.agent.react import ReActChatFormatter
from llama_index.core.agent.workflow import AgentStream, ReActAgent, ToolCallResult
from llama_index.core.tools import FunctionTool
from llama_index.llms.nudging import NudgingLLM
from nudging import BaseTemplate, Nudger, StreamEvent
from nudging.render import legend, to_text
from rich.console import Console
from workflows.errors import WorkflowRuntimeError

REACT_HEADER = """You solve tasks by calling tools. Available tools:
{tool_desc}
Always reply in this format:
Thought: I need to use a tool.
Action: the tool name, one of {tool_names}
Action Input: the tool arguments as JSON

After the tool replies with an Observation, give the final answer:
Thought: I can answer now.
Answer: the answer

Examples:
What is 3 plus 4?
Thought: I need to use a tool.
Action: add
Action Input: {{"a": 3, "b": 4}}
Observation: 7
Thought: I can answer now.
Answer: 7

What is 5 times 6?
Thought: I need to use a tool.
Action: multiply
Action Input: {{"a": 5, "b": 6}}
Observation: 30
Thought: I can answer now.
Answer: 30
"""


def add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


def react_llm(nudger: Nudger | None = None) -> NudgingLLM:
    """A nudged LLM set up for ReAct (see the module docstring for why); the embedded pair by default."""
    return NudgingLLM(
        nudger or Nudger.default(),
        gamma=0.9,
        max_new_tokens=48,
        stop=["Observation:", "\n\n"],
        generate_kwargs={"base_template": BaseTemplate(question_prefix="", answer_prefix="")},
    )


def build_agent(llm: NudgingLLM) -> ReActAgent:
    return ReActAgent(
        tools=[FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)],
        llm=llm,
        formatter=ReActChatFormatter.from_defaults(system_header=REACT_HEADER),
    )


async def main(question: str, max_iterations: int = 4) -> None:
    console = Console(highlight=False)
    agent = build_agent(react_llm())
    console.print(f"Q: {question}", legend(), sep="\n")
    handler = agent.run(user_msg=question, max_iterations=max_iterations)
    async for event in handler.stream_events():
        if isinstance(event, AgentStream) and event.delta:  # raw: the delta with its source
            console.print(to_text([StreamEvent(**event.raw)]), end="")
        elif isinstance(event, ToolCallResult):
            console.print(f"[tool] {event.tool_name}({event.tool_kwargs}) -> {event.tool_output.content}", style="cyan", markup=False)
    try:
        result = await handler
    except WorkflowRuntimeError as exc:  # e.g. max iterations reached without a final answer
        console.print(f"\nAgent stopped: {exc}")
        return
    console.print(f"\nA: {result.response.content}")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "What is 12 multiplied by 7?"))
