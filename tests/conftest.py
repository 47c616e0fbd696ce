import os

# Tests run on CPU with deterministic float32 and no preallocation surprises.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
