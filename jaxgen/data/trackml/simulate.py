"""Command line of the fast TrackML simulation (implementation in ``_simulate``).

Writes N simulated events in the challenge's format::

    python -m jaxgen.data.trackml.simulate --events 10 --out DIR [--seed 0] [--gzip]

The package does not import this module, so ``python -m`` runs it cleanly.
"""

# ruff: noqa: I001
from jaxgen.data.trackml._simulate import C_LIGHT
from jaxgen.data.trackml._simulate import MASS
from jaxgen.data.trackml._simulate import PDG
from jaxgen.data.trackml._simulate import X0_SILICON
from jaxgen.data.trackml._simulate import SimConfig
from jaxgen.data.trackml._simulate import check_capacity
from jaxgen.data.trackml._simulate import main
from jaxgen.data.trackml._simulate import make_geometry
from jaxgen.data.trackml._simulate import simulate_arrays
from jaxgen.data.trackml._simulate import simulate_event

__all__ = [
    "C_LIGHT",
    "MASS",
    "PDG",
    "X0_SILICON",
    "SimConfig",
    "check_capacity",
    "main",
    "make_geometry",
    "simulate_arrays",
    "simulate_event",
]

if __name__ == "__main__":
    raise SystemExit(main())
