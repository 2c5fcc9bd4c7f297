"""The `nudging` command line: one module per command group, all on one Typer `app`."""

from . import bench, draft, generate, serve, train
from .common import app
from .eval import eval_command
from .eval_tools import eval_tools_command

app.command("eval")(eval_command)
app.command("eval-tools")(eval_tools_command)

__all__ = ["app", "bench", "draft", "generate", "serve", "train"]
