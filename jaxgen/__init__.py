"""jaxgen: generative models and classifier-based inference for particle physics, in JAX.

Subpackages (import what you use):

- ``jaxgen.nn``: MLP, residual MLP, deep sets.
- ``jaxgen.train``: the training engine (``fit``, ``fit_ensemble``).
- ``jaxgen.flows``: normalizing flows, conditional flows, flows for flows.
- ``jaxgen.data``: toy densities, simulators and file formats.
- ``jaxgen.metrics``: evaluation metrics.
- ``jaxgen.methods``: the paper procedures built from the above.
"""

__version__ = "0.1.0"
