"""`python -m trainer` is the `train` command."""

from .cli import main

main()
