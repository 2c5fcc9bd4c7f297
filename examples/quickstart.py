from nudging import Nudger

nudger = Nudger.default()  # gemma-3-270m base + SmolLM2-135M-Instruct nudger, offline
res = nudger.generate("What is the capital of France?", gamma=0.4, max_new_tokens=64)
print(res.text)
print([(span.source, span.text) for span in res.spans])  # who wrote what
print(f"nudged {res.stats.nudge_share:.0%} of tokens, stop: {res.stats.stop_reason}")
for event in nudger.stream("How many legs does a spider have?", max_new_tokens=64):
    print(event.text, end="", flush=True)  # each piece knows its event.source too
print()
