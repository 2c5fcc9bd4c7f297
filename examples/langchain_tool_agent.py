"""A LangChain v1 `create_agent` agent run by the nudged embedded pair through native tool calling
(`ChatNudging.bind_tools`), with two tools: the weather in a city and a currency converter.

    .venv/bin/python examples/langchain_tool_agent.py ["What is the weather in Paris, in celsius?"]

The model decides when to call (tool_choice "auto", nothing forced): the embedded pair writes the
call it would make and keeps it only where its arguments come from the conversation (the city, the
amount and currencies the user named), else it answers in text; once the tool has answered, the
same call would repeat one the conversation holds, so it answers in text (`grounded_calls`,
docs/tools.md). The calls are grammar-constrained, so every call names a tool and has arguments
that fit its schema.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRequest, ModelResponse, wrap_model_call
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langchain_nudging import ChatNudging

WEATHER = {"paris": (18, "cloudy"), "tokyo": (24, "sunny"), "oslo": (3, "snow")}
RATES_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0061}


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather in a city; unit is "celsius" or "fahrenheit"."""
    degrees, sky = WEATHER.get(city.strip().lower(), (15, "clear"))
    if unit.lower().startswith("f"):
        return f"{city}: {degrees * 9 / 5 + 32:.0f} °F, {sky}"
    return f"{city}: {degrees} °C, {sky}"


@tool
def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money between currencies given as ISO codes (EUR, USD, GBP, JPY)."""
    src, dst = from_currency.strip().upper(), to_currency.strip().upper()
    if src not in RATES_TO_EUR or dst not in RATES_TO_EUR:
        return f"unknown currency: choose from {', '.join(RATES_TO_EUR)}"
    return f"{amount:g} {src} = {amount * RATES_TO_EUR[src] / RATES_TO_EUR[dst]:.2f} {dst}"


TOOLS = [get_weather, convert_currency]


@wrap_model_call
def one_call_at_a_time(request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
    """One call per model turn (a 135M nudger writes one call well, several poorly); tool_choice stays "auto"."""
    return handler(request.override(model_settings={**request.model_settings, "parallel_tool_calls": False}))


def build_agent(model: ChatNudging | None = None) -> Any:
    """The agent graph over the embedded pair (or `model`)."""
    # small models copy the <tool_response> wrapper of the tool turn into their answer: cut it
    model = model or ChatNudging.default(gamma=0.4, max_tokens=96, stop=["</tool_response>"])
    return create_agent(model, tools=TOOLS, middleware=[one_call_at_a_time], system_prompt="You are a helpful assistant. Use the tools.")


def main(question: str = "What is the weather in Paris, in celsius?") -> dict[str, Any]:
    """Run the agent on one question, print each tool call and the final answer; returns the state."""
    state = build_agent().invoke({"messages": [{"role": "user", "content": question}]}, {"recursion_limit": 8})
    for message in state["messages"]:
        for call in getattr(message, "tool_calls", None) or []:
            print(f"{call['name']}({call['args']})")
        if isinstance(message, ToolMessage):
            print(f"  -> {message.content}")
    print("Answer:", state["messages"][-1].content)
    return state


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "What is the weather in Paris, in celsius?")
