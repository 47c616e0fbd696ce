"""Track finding for TrackML events (arXiv:1904.06778, arXiv:2105.01160).

``find_tracks(hits, cells, config, seed_filter)`` turns one event's hits into a track id
per hit (0 = no track); ``reconstruct`` wraps it into a ``Submission``. The optional seed
filter is the learned cluster-shape doublet classifier of
``jaxgen.methods.trackseeding`` (arXiv:2012.04533). Command line::

    python -m jaxgen.methods.tracking EVENT_PREFIX --out SUBMISSION.csv
"""

# ruff: noqa: I001
from jaxgen.methods.tracking._tracker import PassConfig
from jaxgen.methods.tracking._tracker import TrackerConfig
from jaxgen.methods.tracking._tracker import find_tracks
from jaxgen.methods.tracking._tracker import layer_table
from jaxgen.methods.tracking._tracker import prepare_hits
from jaxgen.methods.tracking._tracker import reconstruct

__all__ = [
    "PassConfig",
    "TrackerConfig",
    "find_tracks",
    "layer_table",
    "prepare_hits",
    "reconstruct",
]
