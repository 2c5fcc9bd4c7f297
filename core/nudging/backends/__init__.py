"""Where a model runs: the Backend/Session protocols, local transformers models, remote
OpenAI-compatible servers."""

from .base import Backend, Capabilities, Session
from .local import LocalModel
from .remote import RemoteModel

__all__ = ["Backend", "Capabilities", "LocalModel", "RemoteModel", "Session"]
