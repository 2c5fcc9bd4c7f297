"""A text ReAct agent (langchain_classic) run by the nudged embedded pair, with two tools:
a calculator and a lookup over the notes in examples/langchain_data/.

    .venv/bin/python examples/langchain_react_agent.py ["What is 17 times 23?"]

The base model continues the ReAct transcript as plain text (no Question/Answer wrapper), which
keeps it in the Thought/Action/Action Input format that the prompt's worked example shows; the
nudger steps in where the base is unsure. Generation stops at "\\nObservation" (cut exactly; also at
"\\nQuestion:", where a base model would start inventing the next episode), and
parsing errors go back to the model as observations. A 270M base is a weak agent: expect the
format, not wisdom.
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from pathlib import Path
from typing import Any

from langchain_classic.agents import AgentExecutor, create_react_agent
from langchain_core.prompts import PromptTemplate
from langchain_core.tools import tool
from langchain_nudging import NudgingLLM
from nudging import BaseTemplate

DATA = Path(__file__).parent / "langchain_data"

# The standard ReAct prompt (hwchase17/react) plus a worked example per tool: small models follow a
# shown pattern far more reliably than a described one. The scratchpad ends in "Thought: "; a prompt
# ending in a space is a token boundary a base model rarely sees, so it hesitates there and the
# nudger, which reads the whole prompt as a fresh question, answers instead. Hence the rstrip (jinja2).
PROMPT = PromptTemplate.from_template(
    """Answer the following questions as best you can. You have access to the following tools:

{{ tools }}

Use the following format:

Question: the input question you must answer
Thought: you should always think about what to do
Action: the action to take, should be one of [{{ tool_names }}]
Action Input: the input to the action
Observation: the result of the action
... (this Thought/Action/Action Input/Observation can repeat N times)
Thought: I now know the final answer
Final Answer: the final answer to the original input question

For example:

Question: How much does a ticket to the Harbour Market cost?
Thought: I should look it up in the notes.
Action: lookup
Action Input: Harbour Market
Observation: The Harbour Market opens at 8:00 on Saturdays. A ticket costs 3 euros.
Thought: I now know the final answer
Final Answer: 3 euros.

Question: What is 6 times 7?
Thought: I should multiply with the calculator.
Action: calculator
Action Input: 6 * 7
Observation: 42
Thought: I now know the final answer
Final Answer: 42

Begin!

Question: {{ input }}
Thought:{{ agent_scratchpad.rstrip(" ") }}""",
    template_format="jinja2",
)

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _arith(node: ast.AST) -> float:
    """Evaluate numbers and + - * / ** only: model output never reaches eval()."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_arith(node.operand))
    raise ValueError("only numbers and + - * / ** are allowed")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. 12 * (3 + 4)."""
    try:
        expression = re.sub(r"(?<=\d)\s*[x×]\s*(?=\d)", " * ", expression.strip())  # "17 x 23"
        return str(_arith(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return f"cannot evaluate {expression!r}: {exc}"


@tool
def lookup(term: str) -> str:
    """Look up a place or topic in the local notes and return the matching note."""
    words = set(re.findall(r"[a-z]{3,}", term.lower()))
    notes = [p.read_text() for p in sorted(DATA.glob("*.md"))]
    best = max(notes, key=lambda note: len(words & set(re.findall(r"[a-z]{3,}", note.lower()))))
    return best if words & set(re.findall(r"[a-z]{3,}", best.lower())) else f"no note mentions {term!r}"


TOOLS = [calculator, lookup]


def react_llm(**fields: Any) -> NudgingLLM:
    """The embedded pair as a NudgingLLM whose base continues the prompt verbatim (empty question/answer prefixes)."""
    settings = {
        "gamma": 0.4,
        "max_tokens": 48,
        "model_kwargs": {"base_template": BaseTemplate(question_prefix="", answer_prefix="", turn_separator="")},
    }
    return NudgingLLM.default(**{**settings, **fields})


def build_agent(llm: NudgingLLM, *, max_iterations: int = 3, verbose: bool = True) -> AgentExecutor:
    # "\nObservation": the tool, not the model, writes observations; "\nQuestion:": a base model
    # that has finished one episode starts inventing the next.
    agent = create_react_agent(llm, TOOLS, PROMPT, stop_sequence=["\nObservation", "\nQuestion:"])
    return AgentExecutor(
        agent=agent,
        tools=TOOLS,
        handle_parsing_errors=True,
        max_iterations=max_iterations,
        return_intermediate_steps=True,
        verbose=verbose,
    )


def main(question: str = "What is 17 times 23?") -> dict:
    result = build_agent(react_llm()).invoke({"input": question})
    print("\nTool calls:")
    for action, observation in result["intermediate_steps"]:
        print(f"  {action.tool}({action.tool_input!r}) -> {str(observation)[:80]!r}")
    print(f"Answer: {result['output']}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
