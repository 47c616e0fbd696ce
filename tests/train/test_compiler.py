"""The training engine's XLA compiler options: accepted by this jaxlib, correct numbers."""

import jax
import numpy as np

from jaxgen.train import compiler_options


def test_options_compile_and_keep_dense_layers_within_float32_rounding():
    opts = compiler_options()
    if jax.default_backend() == "cpu":
        assert opts == {"xla_cpu_experimental_ynn_fusion_type": ""}
    # The option changes which kernels compute a dense layer (product, bias, ReLU fused)
    # and its two backward products. A float32 product of contraction length K is within
    # Higham's bound gamma_K |A| |B| of the exact one, gamma_K = K u / (1 - K u),
    # u = 2^-24; the bias add adds u |x w + b|, and the ReLU (1-Lipschitz) nothing.
    # Both compilations must meet the bound, elementwise, against float64.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    w = rng.normal(size=(64, 128)).astype(np.float32)
    b = rng.normal(size=(128,)).astype(np.float32)
    g = rng.normal(size=(512, 128)).astype(np.float32)  # upstream gradient, masked

    def layer(x, w, b, g):
        return jax.nn.relu(x @ w + b), x.T @ g, g @ w.T

    x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, g))
    pre = x64 @ w64 + b64
    exact = (np.maximum(pre, 0.0), x64.T @ g64, g64 @ w64.T)
    magnitude = (np.abs(x64) @ np.abs(w64), np.abs(x64).T @ np.abs(g64),
                 np.abs(g64) @ np.abs(w64).T)
    u = 2.0 ** -24
    gamma = [k * u / (1 - k * u) for k in (64, 512, 128)]
    tols = [gamma[0] * magnitude[0] + u * np.abs(pre), gamma[1] * magnitude[1],
            gamma[2] * magnitude[2]]
    for fn in (jax.jit(layer, compiler_options=opts), jax.jit(layer)):
        for got, ref, tol in zip(fn(x, w, b, g), exact, tols, strict=True):
            assert (np.abs(np.asarray(got, np.float64) - ref) <= tol).all()
