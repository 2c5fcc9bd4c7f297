"""The tool-use evaluation set (written for this project): four tools, requests that each need one
call with one right answer, and structured-output requests over three JSON schemas.

Every request states each argument plainly (a unit, a time, a currency name) so the expected
arguments are unambiguous; a few ask for a small step (6:15 pm -> hour 18, "euros" -> "EUR").
The structured requests come twice: with the schemas as a user would write them, and bounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }


_CODE = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 currency code, e.g. USD"}
TOOLS: tuple[dict[str, Any], ...] = (
    _tool("get_weather", "Current weather in a city.", {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    }),
    _tool("convert_currency", "Convert an amount of money from one currency to another.", {
        "amount": {"type": "number"}, "from_currency": _CODE, "to_currency": _CODE,
    }),
    _tool("set_alarm", "Set an alarm at a time of day (24-hour clock).", {
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
        "minute": {"type": "integer", "minimum": 0, "maximum": 59},
    }),
    _tool("get_stock_price", "Latest price of a stock.", {
        "ticker": {"type": "string", "pattern": "^[A-Z]{1,5}$", "description": "Ticker symbol, e.g. MSFT"},
    }),
)


@dataclass(frozen=True)
class ToolRequest:
    """One user request, the tool it needs and that call's arguments."""

    id: str
    prompt: str
    tool: str
    arguments: dict[str, Any]


def _weather(i: int, prompt: str, city: str, unit: str) -> ToolRequest:
    return ToolRequest(f"weather-{i}", prompt, "get_weather", {"city": city, "unit": unit})


def _money(i: int, prompt: str, amount: float, src: str, dst: str) -> ToolRequest:
    return ToolRequest(f"currency-{i}", prompt, "convert_currency", {"amount": amount, "from_currency": src, "to_currency": dst})


def _alarm(i: int, prompt: str, hour: int, minute: int) -> ToolRequest:
    return ToolRequest(f"alarm-{i}", prompt, "set_alarm", {"hour": hour, "minute": minute})


def _stock(i: int, prompt: str, ticker: str) -> ToolRequest:
    return ToolRequest(f"stock-{i}", prompt, "get_stock_price", {"ticker": ticker})


REQUESTS: tuple[ToolRequest, ...] = (
    _weather(1, "What is the weather in Paris right now, in celsius?", "Paris", "celsius"),
    _weather(2, "How hot is it in Tokyo? Give me fahrenheit.", "Tokyo", "fahrenheit"),
    _weather(3, "Weather check for Berlin please, celsius.", "Berlin", "celsius"),
    _weather(4, "Is it cold in Chicago today? Use fahrenheit.", "Chicago", "fahrenheit"),
    _weather(5, "Tell me the current temperature in Madrid in celsius.", "Madrid", "celsius"),
    _weather(6, "I'm flying to Sydney. What's the weather there in celsius?", "Sydney", "celsius"),
    _weather(7, "Current weather in Toronto, in fahrenheit.", "Toronto", "fahrenheit"),
    _weather(8, "Do I need a coat in Oslo? Show the weather in celsius.", "Oslo", "celsius"),
    _money(1, "Convert 100 USD to EUR.", 100, "USD", "EUR"),
    _money(2, "How much is 50 euros in US dollars? (EUR to USD)", 50, "EUR", "USD"),
    _money(3, "Convert 2500 JPY into GBP.", 2500, "JPY", "GBP"),
    _money(4, "I have 75.5 CHF. What is that in EUR?", 75.5, "CHF", "EUR"),
    _money(5, "Change 1000 Indian rupees (INR) to US dollars (USD).", 1000, "INR", "USD"),
    _money(6, "What do 20 GBP come to in CAD?", 20, "GBP", "CAD"),
    _money(7, "Convert 300 AUD to JPY, please.", 300, "AUD", "JPY"),
    _money(8, "How many euros (EUR) are 12 US dollars (USD)?", 12, "USD", "EUR"),
    _alarm(1, "Set an alarm for 7:30.", 7, 30),
    _alarm(2, "Wake me up at 6:00 tomorrow.", 6, 0),
    _alarm(3, "Set an alarm at 21:45.", 21, 45),
    _alarm(4, "Please set an alarm for 5:15 in the morning.", 5, 15),
    _alarm(5, "I need an alarm at 18:20.", 18, 20),
    _alarm(6, "Alarm at 9:05, please.", 9, 5),
    _alarm(7, "Set an alarm for 6:15 pm.", 18, 15),
    _alarm(8, "Remind me with an alarm at 12:00 noon.", 12, 0),
    _stock(1, "What is the stock price of Apple (AAPL)?", "AAPL"),
    _stock(2, "Get me the latest MSFT share price.", "MSFT"),
    _stock(3, "How is Tesla trading today? Ticker TSLA.", "TSLA"),
    _stock(4, "Check the price of NVDA stock.", "NVDA"),
    _stock(5, "What's Amazon's share price? Its ticker is AMZN.", "AMZN"),
    _stock(6, "Look up the stock price for ticker IBM.", "IBM"),
    _stock(7, "Price of Alphabet stock (GOOGL), please.", "GOOGL"),
    _stock(8, "What does one share of Netflix (NFLX) cost now?", "NFLX"),
)


@dataclass(frozen=True)
class StructuredRequest:
    """A request for an answer in one JSON schema (the schema is also in the prompt, so the
    unconstrained systems are told the same)."""

    id: str
    prompt: str
    schema: dict[str, Any] = field(repr=False)


PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}, "required": ["name", "age"]}
EVENT = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
        "attendees": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "date", "attendees"],
}
REVIEW = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "summary": {"type": "string"},
    },
    "required": ["rating", "sentiment", "summary"],
}
_SOURCES = {
    "person": (PERSON, ("Ada Lovelace was 36 years old.", "My neighbour Tom is 52.", "Marie Curie, aged 44, won her second Nobel prize.", "The youngest player, Lina, is 9.")),
    "event": (EVENT, ("Team lunch on 2025-03-14 with Ana and Ben.", "The board meeting is on 2024-11-02; Carla, Dev and Eli attend.", "Book club, 2025-06-30, with Fay.", "Launch party on 2026-01-15 for Gus and Hana.")),
    "review": (REVIEW, ("The blender is great, five stars, it crushes ice easily.", "Okay headphones, nothing special, three out of five.", "Terrible phone case, it broke in a day. One star.", "Lovely hotel, friendly staff, I give it four.")),
}


def _structured(sources: dict[str, tuple[dict[str, Any], tuple[str, ...]]], suffix: str = "") -> tuple[StructuredRequest, ...]:
    return tuple(
        StructuredRequest(f"{name}-{i}{suffix}", f"Extract the information from this text as a JSON object matching the schema {json.dumps(schema)}.\nText: {text}", schema)
        for name, (schema, texts) in sources.items()
        for i, text in enumerate(texts, 1)
    )


STRUCTURED = _structured(_SOURCES)

# The same schemas with every string, array and integer bounded: a grammar can then end any answer
# within the budget, where an unbounded one lets a looping model run past it (cut, so invalid).
_BOUNDS = {
    "person": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 150}},
    "event": {
        "title": {"type": "string", "maxLength": 40},
        "date": EVENT["properties"]["date"],
        "attendees": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4},
    },
    "review": {"rating": REVIEW["properties"]["rating"], "sentiment": REVIEW["properties"]["sentiment"], "summary": {"type": "string", "maxLength": 80}},
}
BOUNDED = _structured({name: ({**schema, "properties": _BOUNDS[name]}, texts) for name, (schema, texts) in _SOURCES.items()}, "-bounded")
