"""`python -m ebrain` is the `ebrain` command."""

from ebrain.cli import main

main()
