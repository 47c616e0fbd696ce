"""The training engine's XLA compiler options: accepted by this jaxlib, same numbers."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.nn import MLP
from jaxgen.train import compiler_options


def test_options_compile_and_match_the_default():
    opts = compiler_options()
    if jax.default_backend() == "cpu":
        assert opts == {"xla_cpu_experimental_ynn_fusion_type": ""}
    model = MLP((64, 64, 1))
    x = jax.random.normal(jax.random.key(0), (512, 20))
    params = model.init(jax.random.key(1), x)

    def grad(p):
        return jax.grad(lambda q: jnp.mean(model.apply(q, x) ** 2))(p)

    with_opts = jax.jit(grad, compiler_options=opts)(params)
    default = jax.jit(grad)(params)
    # Other kernels, other summation orders: float32 rounding only. The gradients are
    # sums of N = 512 x 64 terms, whose reordering moves them by ~sqrt(N) eps = 1e-5
    # relative; 1e-4 is ten times that, far below any systematic difference.
    for a, b in zip(jax.tree.leaves(with_opts), jax.tree.leaves(default), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
