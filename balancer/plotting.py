"""matplotlib, headless: the one place both tools get pyplot from (no display needed)."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Lay the figure out, write it as PNG atomically (whole or not at all), close it."""
    import io
    from pathlib import Path

    from .atomic import write_atomic

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    write_atomic(Path(path), buf.getvalue())
