"""The OpenAI-compatible HTTP server: the nudging app, the plain one-model app, their shared
HTTP layer and the engine worker."""

from .app import create_app, run_server, serve, serve_in_thread
from .plain import create_plain_app

__all__ = ["create_app", "create_plain_app", "run_server", "serve", "serve_in_thread"]
