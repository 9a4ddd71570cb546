"""matplotlib, headless: the one place both tools get pyplot from (no display needed).

Lazy imports: matplotlib loads only when a picture is drawn."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .storage import Remote, location

if TYPE_CHECKING:
    pass


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpeg", ".jpeg": "jpeg"}


def figure_format(path: str | Path | Remote) -> str:
    """The format a picture's name asks for; BalanceError for a name no format has."""

    from .errors import BalanceError

    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise BalanceError(
            f"{path}: a picture's name ends in {', '.join(FIGURE_FORMATS)} (got '{suffix}')"
        )
    return FIGURE_FORMATS[suffix]


def figure_bytes(fig: Any, fmt: str) -> bytes:
    """Lay the figure out, render it in `fmt` (png, svg, pdf, jpeg), close it."""

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path | Remote) -> None:
    """Write the figure in the format its name says (PNG, SVG, PDF, JPEG) atomically (whole
    or not at all), and close it."""

    from .atomic import write_atomic

    write_atomic(location(path), figure_bytes(fig, figure_format(path)))
