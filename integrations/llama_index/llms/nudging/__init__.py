"""LlamaIndex integration: `from llama_index.llms.nudging import NudgingLLM`."""

from llama_index.llms.nudging.base import NudgingLLM

__all__ = ["NudgingLLM"]
