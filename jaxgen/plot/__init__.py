"""Plot helpers shared by the experiments."""

from jaxgen.plot.figures import save_figure

__all__ = [
    "save_figure",
]
