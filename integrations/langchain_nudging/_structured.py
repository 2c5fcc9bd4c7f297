"""Structured answers parsed strictly: an answer the budget cut, or one that does not match its
schema, raises OutputParserException. (LangChain's JSON parsers accept partial JSON, which would
turn a cut `{"name": "Ada", "bio": "Ada Lovel` into a valid-looking object.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ValidationError


def structured_parser(schema: Any, method: str) -> Callable[[AIMessage], Any]:
    """AIMessage -> the parsed answer for `with_structured_output(schema, method=...)`: an instance
    of a Pydantic schema, else a dict checked against the JSON schema (json_mode: any JSON object)."""
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    js = None if pydantic or method == "json_mode" or schema is None else schema if isinstance(schema, dict) else convert_to_json_schema(schema)

    def parse(msg: AIMessage) -> Any:
        text = msg.content if isinstance(msg.content, str) else str(msg.content)
        if msg.response_metadata.get("finish_reason") == "length":
            raise OutputParserException("the answer was cut by the token budget (finish_reason 'length') before it was complete; raise max_tokens", llm_output=text)
        if method == "function_calling":
            if msg.invalid_tool_calls:
                raise OutputParserException(f"the model's call is not valid: {msg.invalid_tool_calls[0]['error']}", llm_output=text)
            if not msg.tool_calls:
                raise OutputParserException("the answer holds no tool call", llm_output=text)
            value = msg.tool_calls[0]["args"]
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OutputParserException(f"the answer is not JSON: {exc}", llm_output=text) from exc
        if pydantic:
            try:
                return schema.model_validate(value)
            except ValidationError as exc:
                raise OutputParserException(f"the answer does not match {schema.__name__}: {exc}", llm_output=text) from exc
        if method == "json_mode" and not isinstance(value, dict):
            raise OutputParserException("the answer is not a JSON object", llm_output=text)
        if js is not None:
            import jsonschema

            err = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(js)(js).iter_errors(value))
            if err is not None:
                raise OutputParserException(f"the answer does not match the schema: {err.message}", llm_output=text)
        return value

    return parse
