"""TrackML-compatible events: file I/O, the real detector geometry and a fast simulation.

Formats and detector of the TrackML Particle Tracking Challenge (Amrouche et al.,
arXiv:1904.06778; Throughput phase arXiv:2105.01160). The packaged ``detectors.csv.gz``
is the challenge's real geometry (see ``DATA.md``). The score lives in
``jaxgen.metrics.trackml``.

Example:
  >>> import jax
  >>> from jaxgen.data import trackml
  >>> ev = trackml.simulate_event(jax.random.key(0), trackml.SimConfig(n_particles=20, n_noise=0))
  >>> sorted(ev._fields)
  ['cells', 'event_id', 'hits', 'particles', 'truth']
"""

# One public name per line (project convention); ruff's isort would merge them.
# ruff: noqa: I001
from jaxgen.data.trackml._event import Cells
from jaxgen.data.trackml._event import Event
from jaxgen.data.trackml._event import Hits
from jaxgen.data.trackml._event import Particles
from jaxgen.data.trackml._event import Submission
from jaxgen.data.trackml._event import Truth
from jaxgen.data.trackml._event import check_event
from jaxgen.data.trackml._event import list_events
from jaxgen.data.trackml._event import read_event
from jaxgen.data.trackml._event import read_events
from jaxgen.data.trackml._event import read_submission
from jaxgen.data.trackml._event import read_table
from jaxgen.data.trackml._event import write_event
from jaxgen.data.trackml._event import write_submission
from jaxgen.data.trackml._event import write_table
from jaxgen.data.trackml._geometry import Detector
from jaxgen.data.trackml._geometry import Layers
from jaxgen.data.trackml._geometry import build_layers
from jaxgen.data.trackml._geometry import candidate_modules
from jaxgen.data.trackml._geometry import default_detector_path
from jaxgen.data.trackml._geometry import find_module
from jaxgen.data.trackml._geometry import global_to_local
from jaxgen.data.trackml._geometry import inside_module
from jaxgen.data.trackml._geometry import local_to_global
from jaxgen.data.trackml._geometry import module_index
from jaxgen.data.trackml._geometry import read_detector
from jaxgen.data.trackml._geometry import write_detector
from jaxgen.data.trackml._weights import decode_particle_id
from jaxgen.data.trackml._weights import encode_particle_id
from jaxgen.data.trackml._weights import hit_weights
from jaxgen.data.trackml._weights import weight_pt
from jaxgen.data.trackml._simulate import SimConfig
from jaxgen.data.trackml._simulate import make_geometry
from jaxgen.data.trackml._simulate import simulate_arrays
from jaxgen.data.trackml._simulate import simulate_event

__all__ = [
    "Cells",
    "Detector",
    "Event",
    "Hits",
    "Layers",
    "Particles",
    "SimConfig",
    "Submission",
    "Truth",
    "build_layers",
    "candidate_modules",
    "check_event",
    "decode_particle_id",
    "default_detector_path",
    "encode_particle_id",
    "find_module",
    "global_to_local",
    "hit_weights",
    "inside_module",
    "list_events",
    "local_to_global",
    "make_geometry",
    "module_index",
    "read_detector",
    "read_event",
    "read_events",
    "read_submission",
    "read_table",
    "simulate_arrays",
    "simulate_event",
    "weight_pt",
    "write_detector",
    "write_event",
    "write_submission",
    "write_table",
]
