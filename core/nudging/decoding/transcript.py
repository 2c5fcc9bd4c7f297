"""The shared answer text T with provenance, stop strings, and what a stream may show yet."""

from __future__ import annotations

from ..results import Source, Span, StreamEvent


class Transcript:
    """Accepted text, cut exactly at the first stop string, emitted with a hold-back.

    A stream must not show text that a later token could turn into a stop string, so it holds back
    the longest suffix of T that is a proper prefix of some stop string.
    """

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.stops = stops
        self.spans: list[Span] = []
        self.text = ""
        self.stopped = False
        self._emitted = 0
        self._longest = max((len(s) for s in stops), default=0)

    def add(self, text: str, source: Source) -> bool:
        """Append accepted text; returns True if a stop string now ends the answer."""
        if not text or self.stopped:
            return self.stopped
        start = max(0, len(self.text) - self._longest + 1)
        self.text += text
        if self.spans and self.spans[-1].source == source:
            self.spans[-1] = Span(self.spans[-1].text + text, source)
        else:
            self.spans.append(Span(text, source))
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.cut(min(hits))
            self.stopped = True
        return self.stopped

    def cut(self, length: int) -> None:
        """Drop everything from `length` on (text and spans)."""
        self.text = self.text[:length]
        kept: list[Span] = []
        n = 0
        for span in self.spans:
            if n >= length:
                break
            piece = span.text[: length - n]
            kept.append(Span(piece, span.source))
            n += len(piece)
        self.spans = kept

    def _safe_end(self) -> int:
        if self.stopped or not self.stops:
            return len(self.text)
        for k in range(min(self._longest - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return len(self.text) - k
        return len(self.text)

    def flush(self, final: bool = False) -> list[StreamEvent]:
        """Events for text not shown yet (all of it when final)."""
        end = len(self.text) if final else self._safe_end()
        events: list[StreamEvent] = []
        n = 0
        for span in self.spans:
            lo, hi = max(self._emitted, n), min(end, n + len(span.text))
            if lo < hi:
                events.append(StreamEvent(span.text[lo - n : hi - n], span.source))
            n += len(span.text)
        self._emitted = max(self._emitted, end)
        return events
