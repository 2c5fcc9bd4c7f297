"""LangChain models over the nudging engine: `NudgingLLM` (text) and `ChatNudging` (chat)."""

from .chat_models import ChatNudging
from .llms import NudgingLLM

__all__ = ["ChatNudging", "NudgingLLM"]
