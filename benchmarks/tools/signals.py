"""Which signal decides best between a call and text under tool_choice "auto" (issue 24 item 3)?

Measured per item, on the prompts `nudging eval-tools --bfcl` uses:
  p_open       the nudger's probability of the ids that open a call at the answer's start (what
               `call_threshold` compares; shipped), as log;
  relevance    the base's pointwise mutual information between the tools and the request: mean
               log-probability of the user's text after a tool listing minus after a neutral line
               (two base prefills; a topical fit, blind to the conversation so far);
  yes_no       the nudger asked "Can this tool answer the request?": log P(Yes) - log P(No);
  combined     p_open + w * relevance, w in WEIGHTS.
on BFCL v4 `simple_python` (a call is right) and `irrelevance` (text is right), items 100-199
(calibration) and 0-99 (the evaluation's), and on agent-style requests (a system prompt, tools
of everyday agents, questions a call or plain text is right for; `AGENT_CASES`, which no
threshold was fitted on). For each signal: AUC on each set, and the calls/text rates on each set
at the threshold that is best on the calibration items (balanced). Run from the repo root:

    PYTHONPATH=core .venv/bin/python benchmarks/tools/signals.py     # ~6 minutes on 2 cores

Writes benchmarks/results/tools/signals.{json,md}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from calibrate import auc, choose, rates  # this folder's: run as a script, it is on sys.path

from nudging import Nudger
from nudging.decoding.grammar import decision
from nudging.evaluation import bfcl
from nudging.evaluation.runner import eval_config
from nudging.prompts import build_prompts

WEIGHTS = (0.5, 1.0, 2.0)
OUT = Path("benchmarks/results/tools")


def _fn(name: str, description: str, props: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {"type": "object", "properties": props, "required": list(props)}}}


_S = {"type": "string"}
_TOOLSETS = [
    [_fn("get_stock_price", "Latest price of a stock.", {"ticker": _S}), _fn("set_alarm", "Set an alarm clock.", {"hour": {"type": "integer"}, "minute": {"type": "integer"}})],
    [_fn("send_email", "Send an email.", {"to": _S, "subject": _S, "body": _S}), _fn("translate", "Translate text into another language.", {"text": _S, "target_language": _S})],
    [_fn("get_time", "Current local time in a city.", {"city": _S}), _fn("search_flights", "Find flights between two cities on a date.", {"origin": _S, "destination": _S, "date": _S})],
    [_fn("calculate", "Evaluate an arithmetic expression.", {"expression": _S}), _fn("get_weather", "Current weather in a city.", {"city": _S})],
]
_SYSTEMS = ["You are a helpful assistant.", "You are a helpful assistant with tools.", None]
_CALL = [
    (0, "What is Apple's stock price right now?"), (0, "Wake me up at 7:30 tomorrow."), (0, "How is NVDA trading today?"),
    (1, "Email bob@example.com that the meeting moved to 3pm."), (1, "Translate 'good morning' into Spanish."), (1, "How do you say thank you in Japanese?"),
    (2, "What time is it in Sydney?"), (2, "Find me a flight from Boston to Denver on May 3."), (2, "Is it late in London now?"),
    (3, "What is 345 times 12?"), (3, "Compute 17% of 2300."), (3, "Is it raining in Oslo?"),
]
_TEXT = [
    (0, "Tell me a joke."), (0, "What is the capital of Italy?"), (0, "Thanks, that is all!"),
    (1, "Write a short poem about autumn."), (1, "Who painted the Mona Lisa?"), (1, "How are you today?"),
    (2, "Explain photosynthesis in one sentence."), (2, "What is your name?"), (2, "Give me three tips for sleeping better."),
    (3, "Who wrote Pride and Prejudice?"), (3, "Say hello."), (3, "What colour is the sky?"),
]


def agent_cases() -> list[tuple[str, list[dict], list[dict], bool]]:
    """(id, messages, tools, a call is right) for the agent-style requests."""
    out = []
    for right, cases in ((True, _CALL), (False, _TEXT)):
        for k, (s, q) in enumerate(cases):
            system = _SYSTEMS[k % len(_SYSTEMS)]
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
            out.append((f"agent-{'call' if right else 'text'}-{k}", messages, _TOOLSETS[s], right))
    return out


def _request(messages: list[dict], tools: list[dict]) -> tuple[str, str]:
    """The user's text and a one-line-per-tool listing (name: description) for the probes."""
    return " ".join(m["content"] for m in messages if m["role"] == "user"), "\n".join(f"{t['function']['name']}: {t['function'].get('description', '')}" for t in tools)


class Signals:
    def __init__(self, pair: Nudger) -> None:
        self.pair, self.cfg = pair, eval_config(1)

    @torch.no_grad()
    def p_open(self, messages: list[dict], tools: list[dict]) -> float:
        cfg = self.cfg.merged(tools=tools, tool_choice="auto", parallel_tool_calls=False, gamma=0.4, call_threshold=0.0)
        _, (_, ids) = build_prompts(self.pair.base, self.pair.nudger, messages, cfg)
        logits = self.pair.nudger.model(torch.tensor([ids])).logits[0, -1].float()
        return math.log(decision(cfg, self.pair.base, self.pair.nudger, logits)[0])  # what call_threshold compares

    @torch.no_grad()
    def _mean_logprob(self, context: str, target: str) -> float:
        lm = self.pair.base
        c, t = lm.tokenizer.encode(context, add_special_tokens=True), lm.tokenizer.encode(target, add_special_tokens=False)
        lp = torch.log_softmax(lm.model(torch.tensor([c + t])).logits[0].float(), -1)
        return float(sum(lp[len(c) - 1 + i, tok] for i, tok in enumerate(t))) / len(t)

    def relevance(self, messages: list[dict], tools: list[dict]) -> float:
        q, listing = _request(messages, tools)
        return self._mean_logprob(f"Tools:\n{listing}\n\nA request these tools can answer: ", q) - self._mean_logprob("A request: ", q)

    @torch.no_grad()
    def yes_no(self, messages: list[dict], tools: list[dict]) -> float:
        lm = self.pair.nudger
        q, listing = _request(messages, tools)
        text = f"Tool:\n{listing}\n\nRequest: {q}\n\nCan this tool answer the request? Answer Yes or No."
        ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
        lp = torch.log_softmax(lm.model(torch.tensor([lm.tokenizer.encode(ids, add_special_tokens=False)])).logits[0, -1].float(), -1)
        best = lambda words: max(float(lp[lm.tokenizer.encode(w, add_special_tokens=False)[0]]) for w in words)  # noqa: E731
        return best(["Yes", " Yes", "yes", " yes"]) - best(["No", " No", "no", " no"])

    def record(self, item_id: str, messages: list[dict], tools: list[dict], right: bool) -> dict:
        return {"item": item_id, "call_right": right, "p_open": self.p_open(messages, tools), "relevance": self.relevance(messages, tools), "yes_no": self.yes_no(messages, tools)}


def scores(records: list[dict]) -> dict[str, list[float]]:
    out = {k: [r[k] for r in records] for k in ("p_open", "relevance", "yes_no")}
    for w in WEIGHTS:
        out[f"p_open + {w:g} relevance"] = [r["p_open"] + w * r["relevance"] for r in records]
    return out


def main() -> None:
    pair = Nudger.default()
    s = Signals(pair)
    sets: dict[str, list[dict]] = {}
    for name, lo, hi in (("calibration (BFCL 100-199)", 100, 200), ("evaluation (BFCL 0-99)", 0, 100)):
        items = [(i, True) for i in bfcl.load_items("simple_python", hi)[lo:]] + [(i, False) for i in bfcl.load_items("irrelevance", hi)[lo:]]
        sets[name] = [s.record(i.id, i.messages, i.tools, right) for i, right in items]
    sets["agent-style requests"] = [s.record(*case) for case in agent_cases()]
    table = []
    cal = sets["calibration (BFCL 100-199)"]
    cal_scores, cal_right = scores(cal), [r["call_right"] for r in cal]
    for signal, values in cal_scores.items():
        t = choose(values, cal_right)
        row = {"signal": signal, "threshold": t}
        for name, records in sets.items():
            v, y = scores(records)[signal], [r["call_right"] for r in records]
            row[name] = {"auc": auc(v, y), "calls_where_right": rates(v, y, t)[0], "text_where_right": rates(v, y, t)[1]}
        table.append(row)
    names = list(sets)
    lines = ["| signal | " + " | ".join(f"{n}: AUC, calls / text at the calibrated threshold" for n in names) + " |", "|---|" + "---|" * len(names)]
    for row in table:
        lines.append(f"| {row['signal']} | " + " | ".join(f"{row[n]['auc']:.2f}, {row[n]['calls_where_right']:.0%} / {row[n]['text_where_right']:.0%}" for n in names) + " |")
    md = "\n".join(lines) + f"\n\nPair: {pair.base.name} + {pair.nudger.name}, weights {pair.base.model.dtype}; sizes: " + ", ".join(f"{n} {len(r)}" for n, r in sets.items()) + ".\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "signals.json").write_text(json.dumps({"table": table, "records": sets}, indent=1) + "\n")
    (OUT / "signals.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
