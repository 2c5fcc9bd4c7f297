"""The `nudging` command line: one module per command group, all on one Typer `app`."""

from . import bench, draft, generate, serve, train
from .common import app
from .eval import eval_command

app.command("eval")(eval_command)

__all__ = ["app", "bench", "draft", "generate", "serve", "train"]
