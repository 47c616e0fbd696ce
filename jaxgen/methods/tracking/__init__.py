"""Track finding for TrackML events (arXiv:1904.06778, arXiv:2105.01160)."""

# ruff: noqa: I001
from jaxgen.methods.tracking._tracker import PassConfig
from jaxgen.methods.tracking._tracker import TrackerConfig
from jaxgen.methods.tracking._tracker import find_tracks

__all__ = [
    "PassConfig",
    "TrackerConfig",
    "find_tracks",
]
