"""What both command lines share: run a typer app so every user error is one line."""
from __future__ import annotations

import sys

import typer

from .errors import UserError


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_app(app: typer.Typer) -> None:
    """Run a typer app: usage and user errors print `error: ...` on stderr and exit non-zero."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the tool alone: show its help
            print(exc.ctx.get_help())
            code = 0
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            code = exc.exit_code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except OSError as exc:  # disk full, permission denied, ...: the system's words, one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except typer.Abort:
        code = 130
    sys.exit(code or 0)
