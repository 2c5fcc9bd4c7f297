"""Who decides best between a call and text (issue 24, items 2 and 3)?

Under tool_choice "auto" the decision is the answer's first token: "<" opens a call (the grammar then
constrains it), anything else is text; whitespace before "<" counts as a preface to a call. This script decodes only that opening (max_new_tokens 3,
greedy, constrained) for base alone (γ 0), nudger alone (γ 2) and nudged (γ 0.4), on BFCL
simple_python and the project's tool set (a call is right) and BFCL irrelevance (text is right),
for each prompt wording:
  old:        today's (before issue 24) TOOLS_PROMPT for both models, with the literal {...} example
              and the "auto" rule, in the base's system text;
  new:        the shipped prompts: a real tool's call as the example; the base's prompt a document
              with a worked question -> call turn (tools.base_tools_turns);
  new+text:   new, plus a worked question -> plain-text turn before the call turn (base only).
A nudged pair whose opener is decided by one model alone makes exactly that model's decision (the
first word is the same text either way), so "nudger opens" = the nudger column, "base opens" = base.
Answers are cached in benchmarks/results/tools/decision.jsonl. Run from the repo root:
`PYTHONPATH=core python benchmarks/tools/decision.py [N]` (first N items of each set, default 10).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nudging import Nudger
from nudging import prompts
from nudging.evaluation import bfcl
from nudging.evaluation.runner import eval_config
from nudging.evaluation.tool_set import REQUESTS, TOOLS
from nudging.tools import RULES, check_tools

OLD_TOOLS_PROMPT = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with one <tool_call></tool_call> block per call, each holding a JSON object "
    'with the tool\'s "name" and its "arguments", for example:\n'
    '<tool_call>\n{{"name": "{example}", "arguments": {{...}}}}\n</tool_call>\n{rule}'
)
TEXT_TURN = [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}]


def old_system_text(tools, choice):
    rule = RULES["required" if choice == "required" else "auto"]
    return OLD_TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools), example=tools[0]["function"]["name"], rule=rule)


SHIPPED = (prompts.tools_system_text, prompts.base_tools_turns)


def use(variant: str) -> None:
    """Point prompts.py at one wording."""
    if variant == "old":
        prompts.tools_system_text = old_system_text
        prompts.base_tools_turns = lambda tools, choice: (old_system_text(tools, choice), [])
    elif variant == "new":
        prompts.tools_system_text, prompts.base_tools_turns = SHIPPED
    elif variant == "new+text":
        prompts.tools_system_text = SHIPPED[0]

        def with_text(tools, choice):
            header, turns = SHIPPED[1](tools, choice)
            return header, TEXT_TURN + turns

        prompts.base_tools_turns = with_text


def _calls(text: str) -> bool:
    return text.lstrip().startswith("<")


def items(n: int) -> list[tuple[str, str, object, tuple, bool]]:
    """(set, id, prompt, tools, call is right)."""
    out = [("simple_python", i.id, i.messages, i.tools, True) for i in bfcl.load_items("simple_python", n)]
    out += [("irrelevance", i.id, i.messages, i.tools, False) for i in bfcl.load_items("irrelevance", n)]
    own = check_tools(TOOLS)
    out += [("project set", r.id, r.prompt, own, True) for r in REQUESTS[::4][:n]]
    return out


def main(n: int = 10) -> None:
    path = Path("benchmarks/results/tools/decision.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["variant"], r["system"], r["item"]) for r in map(json.loads, path.read_text().splitlines())} if path.exists() else set()
    model = Nudger.default()
    cfg = eval_config(3).merged(draft_tokens=4)  # the decision is the first token: a short draft gives the same one
    systems = {"base": 0.0, "nudger": 2.0, "nudged@0.4": 0.4}
    todo = items(n)
    with path.open("a", encoding="utf-8") as f:
        for variant in ("new", "old", "new+text"):
            use(variant)
            for system, gamma in systems.items():
                if variant == "new+text" and system == "nudger":
                    continue  # the nudger's prompt is the same as "new"
                left = [t for t in todo if (variant, system, t[1]) not in done]
                for start in range(0, len(left), 8):
                    chunk = left[start:start + 8]
                    configs = [cfg.merged(tools=t[3], tool_choice="auto", parallel_tool_calls=False, constrained=True) for t in chunk]
                    for t, res in zip(chunk, model.generate_batch([t[2] for t in chunk], configs, gamma=gamma)):
                        rec = {"variant": variant, "system": system, "set": t[0], "item": t[1], "call_right": t[4], "called": _calls(res.text), "first_source": res.spans[0].source if res.spans else None, "text": res.text}
                        f.write(json.dumps(rec) + "\n")
                        f.flush()
                    print(variant, system, start + len(chunk), "/", len(left), flush=True)
    use("new")
    table(path, {t[1] for t in todo})


def table(path: Path, ids: set[str]) -> None:
    """Decision accuracy per wording, system and set (right = called where a call is right, else text)."""
    recs = [r for r in map(json.loads, path.read_text().splitlines()) if r["item"] in ids]
    groups: dict[tuple, list] = {}
    for r in recs:
        groups.setdefault((r["variant"], r["system"], r["set"]), []).append(r)
    print("| wording | system | set | n | called | right decision |\n|---|---|---|---|---|---|")
    for (variant, system, s), rs in sorted(groups.items()):
        called = sum(_calls(r["text"]) for r in rs)
        right = sum(_calls(r["text"]) == r["call_right"] for r in rs)
        print(f"| {variant} | {system} | {s} | {len(rs)} | {called}/{len(rs)} | {right}/{len(rs)} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
