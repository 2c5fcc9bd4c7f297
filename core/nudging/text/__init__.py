"""Text between tokenizers: tokenizing the other model's text in context, word boundaries, and
one model's token view of the shared answer."""

from .sync import IncrementalDecoder, decode, encode_continuation, word_boundaries
from .view import Forward, Needs, View

__all__ = ["Forward", "IncrementalDecoder", "Needs", "View", "decode", "encode_continuation", "word_boundaries"]
