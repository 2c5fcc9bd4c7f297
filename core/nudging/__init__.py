"""nudging: align a large base model at inference time with a small chat model (NUDGING, ACL 2025)."""

from .config import BaseTemplate, NudgingConfig, SamplingParams
from .errors import ConfigError, DeviceMemoryError, InputError, ModelLoadError, NudgingError
from .nudger import Nudger, Stream
from .policies import EntropyPolicy, LearnedPolicy, NudgingPolicy, TopProbPolicy
from .prompts import RawPrompt
from .results import Result, Span, Stats, StreamEvent

__all__ = [
    "BaseTemplate",
    "ConfigError",
    "DeviceMemoryError",
    "EntropyPolicy",
    "InputError",
    "LearnedPolicy",
    "ModelLoadError",
    "Nudger",
    "NudgingConfig",
    "NudgingError",
    "NudgingPolicy",
    "RawPrompt",
    "Result",
    "SamplingParams",
    "Span",
    "Stats",
    "Stream",
    "StreamEvent",
    "TopProbPolicy",
]
__version__ = "0.1.0"
