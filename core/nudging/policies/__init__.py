"""When to nudge: threshold rules on the base's distribution and the learned head."""

from .learned import LearnedPolicy
from .rules import EntropyPolicy, NudgingPolicy, TopProbPolicy

__all__ = ["EntropyPolicy", "LearnedPolicy", "NudgingPolicy", "TopProbPolicy"]
