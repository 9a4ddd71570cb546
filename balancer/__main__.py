"""`python -m balancer` is the `balance` command."""

from .cli import main

main()
