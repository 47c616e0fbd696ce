"""Datasets and simulators: import the submodule you need, e.g. ``from jaxgen.data import toys``.

- ``toys``: 2D toy densities, conditional toys, Gaussian mixtures.
- ``showers``: SUPA-like particle-shower simulator (arXiv:2202.05012), CaloGAN-like grids, HDF5.
- ``trackml``: TrackML event I/O, real detector geometry, fast simulation.
- ``digits``: the 8x8 handwritten digits (UCI, as shipped with scikit-learn), packaged.
- ``dijets``: LHCO-R&D-like dijet generator, SR/sideband regions, real LHCO R&D events.
"""
