"""What both command lines share: run a typer app so every user error is one line.

Lazy imports: the version is read when asked for: the package imports this module."""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
import typer.core

from . import interrupts
from .errors import ToolWarning, UserError
from .storage import Remote, location, parse_options, store_error

MAX_WARNINGS = 20
CONTEXT = {"help_option_names": ["-h", "--help"]}  # typer/click settings both tools share


def _usage_name(self: Any) -> str:
    """An argument in the usage line as users write it: SRC, [PATH] (typer 0.29 says {SRC})."""
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


if hasattr(getattr(typer, "core", None), "TyperArgument") and hasattr(
    typer.core.TyperArgument, "_usage_display_name"
):
    typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


# The options every command spells the same way (pip's cmdoptions habit): declared here
# once, each command giving only its own help text.


def out_option(help: str, *, required: bool = True) -> Any:
    """--out/-o OUT: where a command writes."""
    return typer.Option(... if required else None, "--out", "-o", metavar="OUT", help=help)


def storage_option() -> Any:
    """--storage-option KEY=VALUE (repeatable): what a store's file system needs beyond
    what it takes from the environment and profiles."""
    return typer.Option(
        [],
        "--storage-option",
        metavar="KEY=VALUE",
        help="For s3://, gs://, az:// folders: an option of the store's fsspec file system "
        "(repeatable; VALUE read as JSON where it parses), e.g. profile=dev, anon=true, "
        "endpoint_url=http://localhost:9000. Credentials and endpoints otherwise come from "
        "the environment and profiles, as each library takes them.",
    )


def places(options: list[str]) -> Callable[[str], Path | Remote]:
    """A folder or file given on the command line as a local Path, or as a store's folder
    opened with the --storage-option pairs."""
    parsed = parse_options(options)
    return lambda text: location(text, parsed)


def overwrite_option(help: str) -> Any:
    """--overwrite: replace an earlier output this tool wrote."""
    return typer.Option(False, "--overwrite", help=help)


def workers_option(help: str) -> Any:
    """--workers/-j N."""
    return typer.Option(None, "--workers", "-j", help=help)


def quiet_option(help: str = "No progress output.") -> Any:
    """--quiet/-q."""
    return typer.Option(False, "--quiet", "-q", help=help)


def fsync_option() -> Any:
    """--fsync/--no-fsync: whether files are flushed to the disk before they are relied on."""
    return typer.Option(
        True,
        "--fsync/--no-fsync",
        help="Flush every file to the disk before it is renamed into place, so a power cut "
        "leaves the last whole state (--no-fsync: faster on a scratch disk, where a power cut "
        "may leave a folder only a new build replaces).",
    )


def json_option(help: str) -> Any:
    """--json: the report as JSON on stdout (and nothing else there)."""
    return typer.Option(False, "--json", help=help)


def version_flag(tool: str) -> Any:
    """The --version option of a typer app's callback: prints `<tool> <version>` and exits."""
    return typer.Option(
        False,
        "--version",
        callback=_show_version(tool),
        is_eager=True,
        help="Print the version and exit.",
    )


def _show_version(tool: str) -> Callable[[bool], None]:

    def show(value: bool) -> None:
        if value:
            from .. import __version__

            print(f"{tool} {__version__}")
            raise typer.Exit()

    return show


@contextmanager
def on_interrupt(hint: str, *, deadline: float | None = None) -> Iterator[None]:
    """Ctrl-C inside the block: one line saying what state things are in, exit 130.

    With `deadline`, the process also ends that many seconds after Ctrl-C whatever it is
    doing, as a kill would end it: a library that swallows the interrupt, or threads blocked
    on a full queue that would keep the process alive, cannot hold it (what a resumed run
    needs is written atomically, so a kill at any moment leaves it whole)."""
    said = threading.Event()
    previous = None
    if deadline is not None and threading.current_thread() is threading.main_thread():

        def interrupted(signum: int, frame: Any) -> None:
            timer = threading.Timer(deadline, _stop_now, (hint, said))
            timer.daemon = True
            timer.start()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second: as usual
            interrupts.deliver()  # now, or where a held stretch of work ends

        previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    except KeyboardInterrupt:
        said.set()
        print(f"\ninterrupted: {hint}", file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _stop_now(hint: str, said: threading.Event) -> None:
    """The deadline after Ctrl-C passed: say so (once) and end the process now."""
    if not said.is_set():
        os.write(2, f"\ninterrupted: {hint}\n".encode())
    os._exit(130)


def warn(message: str) -> None:
    """`warning: message` on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def report_skipped(skipped: Sequence[dict], empty: Sequence[str] = ()) -> None:
    """A warning per skipped file (the first MAX_WARNINGS) and per empty class folder."""
    for entry in skipped[:MAX_WARNINGS]:
        warn(f"skipped {entry['path']}: {entry['reason']}")
    if len(skipped) > MAX_WARNINGS:
        warn(f"... and {len(skipped) - MAX_WARNINGS} more skipped files")
    for label in empty:
        warn(f"class folder '{label}' has no usable image; left out")


def text_table(
    rows: Mapping[str, Mapping], columns: Sequence[str], *, width: int = 7, total: bool = False
) -> str:
    """One row per class, the class name left-aligned and each column right-aligned in
    `width`; total=True adds a row of column sums."""
    if total:
        rows = {**rows, "total": {c: sum(r[c] for r in rows.values()) for c in columns}}
    first = max([5, *map(len, rows)])

    def line(label: str, cells: Iterable) -> str:
        return f"{label:<{first}}  " + "  ".join(f"{cell:>{width}}" for cell in cells)

    return "\n".join(
        [
            line("class", columns),
            *(line(label, (r[c] for c in columns)) for label, r in rows.items()),
        ]
    )


class ToolGroup(typer.core.TyperGroup):
    """Each tool's click group. However it is run (its console script, typer's `CliRunner`, a
    notebook calling `app(args)`), a usage or user error is one `error: ...` line on stderr
    and a non-zero exit code: the door is the app itself, not a wrapper around one caller."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line and exit with its code; with standalone_mode=False, return it."""

        def run() -> Any:
            return super(ToolGroup, self).main(
                args, prog_name, complete_var, standalone_mode=False, **extra
            )

        if not standalone_mode:
            return _run(run)
        try:
            code = _run(run)
            sys.stdout.flush()  # a block-buffered stdout (a pipe) writes here, not at exit
        except BrokenPipeError:  # `balance ... | head`: the reader left; stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 1
        if _FATAL.is_set():  # the error is said; a library's broken state must not crash
            _end_pools()  # the interpreter's teardown after it
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 1)
        sys.exit(code or 0)


def tool_app(**settings: Any) -> typer.Typer:
    """A typer app (or sub-app) as both tools declare them: `-h`, help without arguments,
    plain tracebacks off, errors through `ToolGroup`."""
    return typer.Typer(
        cls=ToolGroup,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT,
        **settings,
    )


def _show_tool_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if issubclass(category, ToolWarning):
        warn(str(message))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


# HDF5's words for a failed write (a full disk while Keras saves weights): the file and the
# system's message are inside, over two lines.
HDF5_WRITE = re.compile(
    r"file write failed.*?filename = '(?P<file>[^']*)'.*?error message = '(?P<why>[^']*)'",
    re.DOTALL,
)
_FATAL = threading.Event()  # set: end the process at once after the error line (os._exit)


def _end_pools() -> None:
    """What an ending interpreter does first, before the process ends without the rest of
    its teardown: joblib's process pool stopped (its workers killed), then the exit
    handlers (its shared memory among them)."""

    pools = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(pools, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)
    atexit._run_exitfuncs()


def system_error(exc: OSError) -> str:
    """An OSError as one line: the system's words and the file, however the library that
    raised it worded it (HDF5 spreads them over two lines)."""
    found = HDF5_WRITE.search(str(exc))
    if found:
        return f"{found['why']}: {found['file']}"
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or str(exc).splitlines()[0]}{where}"


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook while a command runs.

    Ctrl-C that lands where Python cannot raise it (in a garbage-collection callback, such
    as the one JAX registers, or a finalizer) would be printed as an ignored traceback and
    lost: it is sent again, a moment later, to land in ordinary code, and nothing is printed.
    HDF5 objects that failed to write (a full disk) fail again when they are freed; that is
    the same error, already said in one line, so it is not printed again, and the process
    ends without its teardown."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        again = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
        again.daemon = True
        again.start()
        return
    if HDF5_WRITE.search(str(unraisable.exc_value)):
        _FATAL.set()
        return
    sys.__unraisablehook__(unraisable)


def _broken_hdf5_printed(kind: Any, value: BaseException, tb: Any) -> None:
    """sys.excepthook while a command runs: the same, for the copy Cython prints first."""
    if HDF5_WRITE.search(str(value)):
        _FATAL.set()
        return
    sys.__excepthook__(kind, value, tb)


def _run(command: Callable[[], Any]) -> int:
    """Run a command line; its user errors become one line on stderr and its exit code."""
    shown, warnings.showwarning = warnings.showwarning, _show_tool_warning  # one line each
    hooks = sys.unraisablehook, sys.excepthook
    sys.unraisablehook, sys.excepthook = _unraisable, _broken_hdf5_printed
    try:
        result = command()
        code = result if isinstance(result, int) else 0  # click returns Exit's code
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the tool alone: show its help
            print(exc.ctx.get_help())  # type: ignore[attr-defined]
            code = 0
        else:
            print(f"error: {exc.format_message()}", file=sys.stderr)
            code = exc.exit_code
    except UserError as exc:
        print(f"error: {exc.for_command_line()}", file=sys.stderr)
        code = 1
    except OSError as exc:  # disk full, permission denied, ...: the system's words, one line
        print(f"error: {system_error(exc)}", file=sys.stderr)
        code = 1
        if HDF5_WRITE.search(str(exc)):  # h5py's objects are broken now: their teardown
            _FATAL.set()  # at exit prints tracebacks and can crash the interpreter
    except MemoryError:
        print(
            "error: out of memory (this process may take no more: fewer --workers, a smaller "
            "--batch or --image-size, --cache off, or a higher memory limit)",
            file=sys.stderr,
        )
        code = 1
    except Exception as exc:  # a store's client (no credentials, no endpoint): one line
        said = store_error(exc)
        if said is None:
            raise
        print(f"error: {said}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except typer.Abort:
        code = 130
    finally:
        warnings.showwarning = shown
        sys.unraisablehook, sys.excepthook = hooks
    return code
