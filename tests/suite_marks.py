"""Marks on langchain-tests suite methods without touching the suite's own function objects."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest


def marked(test: Callable[..., Any], *marks: pytest.MarkDecorator) -> Callable[..., Any]:
    """A copy of a suite test carrying `marks` too. `pytest.mark.xfail(Suite.test_x)` appends the mark
    to the function object the suite class owns, so every other class (and file) reusing that test
    would inherit it: an xfail meant for the tiny pair would hide a failure on the real pair."""
    if inspect.iscoroutinefunction(test):

        @functools.wraps(test, updated=())
        async def copy(*args: Any, **kwargs: Any) -> Any:
            return await test(*args, **kwargs)

    else:

        @functools.wraps(test, updated=())
        def copy(*args: Any, **kwargs: Any) -> Any:
            return test(*args, **kwargs)

    copy.pytestmark = [*getattr(test, "pytestmark", []), *(m.mark for m in marks)]  # type: ignore[attr-defined]
    return copy
