"""What both command lines share: run a typer app so every user error is one line."""
from __future__ import annotations

import os
import sys
import warnings

import typer

from .errors import ToolWarning, UserError


MAX_WARNINGS = 20


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def report_skipped(skipped: list[dict], empty: list[str] = ()) -> None:
    """A warning per skipped file (the first MAX_WARNINGS) and per empty class folder."""
    for entry in skipped[:MAX_WARNINGS]:
        warn(f"skipped {entry['path']}: {entry['reason']}")
    if len(skipped) > MAX_WARNINGS:
        warn(f"... and {len(skipped) - MAX_WARNINGS} more skipped files")
    for label in empty:
        warn(f"class folder '{label}' has no usable image; left out")


def run_app(app: typer.Typer) -> None:
    """Run a typer app: usage and user errors print `error: ...` on stderr and exit non-zero."""
    try:
        code = _run(app)
    except BrokenPipeError:  # `balance ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code or 0)


def _show_tool_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, ToolWarning):
        warn(str(message))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _run(app: typer.Typer) -> int:
    warnings.showwarning = _show_tool_warning  # the library's ToolWarnings: one line each
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
    return code
