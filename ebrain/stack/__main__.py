"""`python -m ebrain.stack up|down|status`: the same commands as `ebrain stack`, without the other rooms."""

from ebrain.stack.cli import app

app(prog_name="ebrain stack")
