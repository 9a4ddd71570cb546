"""matplotlib, headless: the one place both tools get pyplot from (no display needed)."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
