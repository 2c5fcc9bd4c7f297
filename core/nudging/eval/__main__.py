import typer

from .command import eval_command

typer.run(eval_command)
