"""`python -m rescompile` runs the command line."""

from rescompile.cli import main

main()
