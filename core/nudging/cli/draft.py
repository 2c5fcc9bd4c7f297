"""`nudging draft-table`: a corpus tri-gram table for one base tokenizer, to back the drafter."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from ..errors import NudgingError
from ..loading import EMBEDDED_BASE
from .common import _converted, app, fail


@app.command("draft-table")
def draft_table(
    out: Annotated[str, typer.Argument(help="File to write (load it with NgramTable.load and pass it as NudgingConfig(drafter=...)).")],
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="The base model's tokenizer: HF id, folder, .gguf file or embedded:base.")] = EMBEDDED_BASE,
    corpus: Annotated[str | None, typer.Option("--corpus", help="A JSON list of strings or of objects with an 'output' field; default: AlpacaEval's reference answers.")] = None,
) -> None:
    """Count the tri-grams of a corpus in the base tokenizer's ids and save them."""
    from ..decoding.drafting import NgramTable
    from ..loading import load_tokenizer
    from ..loading.packages import alpaca_eval_references

    try:
        path = corpus or alpaca_eval_references()
        items = json.loads(open(path, encoding="utf-8").read())
        tok = load_tokenizer(_converted(tokenizer))
    except (NudgingError, OSError, ValueError) as exc:
        fail(str(exc))
    texts = [x if isinstance(x, str) else x.get("output", "") for x in items]
    table = NgramTable.from_texts(tok, texts, name=tokenizer)
    table.save(out)
    Console().print(f"{len(table)} tri-grams from {len(texts)} texts → {out}")
