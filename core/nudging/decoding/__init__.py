"""The algorithm: a generation is a `Run` coroutine that asks for forwards; `drive` serves one,
`BatchDecoder` many in shared forwards."""

from .batching import BatchDecoder, decode_all
from .engine import Engine, Ticket
from .run import Run, Steps, drive

__all__ = ["BatchDecoder", "Engine", "Run", "Steps", "Ticket", "decode_all", "drive"]
