"""Saving matplotlib figures atomically."""

from __future__ import annotations

import os

from jaxgen.io import atomic_open


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> None:
    """Writes ``fig`` as PNG to ``path`` atomically and closes it."""
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    plt.close(fig)
