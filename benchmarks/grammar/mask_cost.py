"""Grammar mask cost per token on both embedded tokenizers: compute (llguidance) + apply (numpy), per
appended token of a JSON-schema answer and a tool call, three passes. Run from the repo root:
`PYTHONPATH=core:tests python benchmarks/grammar/mask_cost.py` (prints README table rows)."""
import statistics, sys, time, torch
sys.path[:0] = ["tests"]
from tiny_models import real_tokenizers
from nudging.decoding.grammar import Matcher, response_format_grammar, tool_grammar
from nudging.tools import check_tools
g, s = real_tokenizers()
schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["name", "age", "tags"]}
tools = check_tools([{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}} for n in ("get_weather", "get_time", "search")])
cases = {
  "json_schema": (response_format_grammar(schema), '{"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry", "engines"]}'),
  "tools(auto)": (tool_grammar(list(tools), "auto", True), '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'),
}
for tname, tok in (("gemma-3 (262k)", g), ("SmolLM2 (49k)", s)):
    for cname, (grammar, text) in cases.items():
        m = Matcher(grammar, tok, frozenset([tok.eos_token_id]))
        ids = tok.encode(text, add_special_tokens=False)
        logits = torch.randn(len(tok))
        per = []
        for _ in range(3):
            for i in ids:
                t = time.perf_counter(); m.mask(logits); per.append(time.perf_counter() - t)
                m.consume([i])
            m.rollback(len(ids))
        print(f"| {tname} | {cname} | {len(ids)} | {statistics.median(per)*1e3:.2f} ms | {max(per)*1e3:.2f} ms |")
