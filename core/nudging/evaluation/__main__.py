import typer

from ..cli.eval import eval_command

typer.run(eval_command)
