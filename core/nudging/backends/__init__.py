"""Where a model runs: the Backend/Session protocols, local transformers models, remote
OpenAI-compatible servers."""

from .base import Backend, Capabilities, Session
from .local import LocalModel
from .remote import RemoteModel
from .static import StaticModel, fast_local, self_check

__all__ = ["Backend", "Capabilities", "LocalModel", "RemoteModel", "Session", "StaticModel", "fast_local", "self_check"]
