"""Talk to `nudging serve` with the official openai client: one chat answer, then a streamed one
with each piece's author (the nudger's words in bold).

    python examples/server_client.py                      # starts the embedded pair in-process
    nudging serve --port 8000 &                           # or a server of your own...
    python examples/server_client.py --base-url http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from openai import OpenAI

QUESTION = "Give three short tips for sleeping well."


@contextlib.contextmanager
def server(base_url: str | None) -> Iterator[str]:
    """The given server, or the embedded pair served on a free local port for the duration."""
    if base_url:
        yield base_url
        return
    from nudging import Nudger
    from nudging.serving import create_app, serve_in_thread

    with serve_in_thread(create_app(Nudger.default())) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running server's /v1 URL (default: start the embedded pair here)")
    parser.add_argument("--model", default="nudging")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)

    with server(args.base_url) as url:
        client = OpenAI(base_url=url, api_key="not-needed")
        messages = [{"role": "user", "content": QUESTION}]

        res = client.chat.completions.create(model=args.model, messages=messages, max_tokens=args.max_tokens, temperature=0)
        stats = res.model_extra["nudging"]["stats"]
        print(res.choices[0].message.content)
        print(f"-- {res.usage.completion_tokens} tokens, nudge share {stats['nudge_share']:.0%}, finish_reason {res.choices[0].finish_reason}\n")

        print("streamed (nudger in bold):")
        stream = client.chat.completions.create(model=args.model, messages=messages, max_tokens=args.max_tokens, stream=True)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text = chunk.choices[0].delta.content
                bold = chunk.model_extra["nudging"]["source"] == "nudger"
                print(f"\033[1m{text}\033[0m" if bold else text, end="", flush=True)
        print()


if __name__ == "__main__":
    main()
