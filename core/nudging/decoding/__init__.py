"""The algorithm: a generation is a `Run` coroutine that asks for forwards; `drive` serves one,
`BatchDecoder` many in shared forwards."""

from .batching import BatchDecoder, decode_all
from .run import Run, Steps, drive

__all__ = ["BatchDecoder", "Run", "Steps", "decode_all", "drive"]
