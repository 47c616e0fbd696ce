"""A linear classifier on frozen features (the linear probe of SimCLR, arXiv:2002.05709).

Stage 2 of InfoSCC-GAN (arXiv:2112.09653): a linear layer on the frozen encoder
features minimises ``H(Y|E)`` with the cross entropy, for external attribute labels or
"internal" labels from k-means on the embeddings.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.train import FitConfig
from jaxgen.train import FitResult
from jaxgen.train import fit


class LinearProbe(NamedTuple):
    """A trained linear probe.

    Attributes:
      params: parameters of a ``flax.linen.Dense(num_classes)``.
      num_classes: number of classes.
      result: the ``FitResult`` of training.
    """

    params: Any
    num_classes: int
    result: FitResult


def probe_logits(params: Any, features: jax.Array) -> jax.Array:
    """Class logits ``(n, num_classes)`` of features ``(n, f)`` (differentiable, jit-able)."""
    kernel = params["params"]["kernel"]
    return features @ kernel + params["params"]["bias"]


def train_linear_probe(
    key: jax.Array,
    features: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    num_classes: int,
    *,
    config: FitConfig | None = None,
) -> LinearProbe:
    """Fits a softmax-regression classifier on frozen ``features`` with ``fit``.

    Args:
      key: PRNG key.
      features: ``(n, f)`` frozen features.
      labels: ``(n,)`` integer labels in ``[0, num_classes)``.
      num_classes: number of classes (``>= 2``).
      config: ``FitConfig``; by default 100 epochs, batch 256, lr 3e-3, weight decay 1e-6
        (the paper's), 10 % validation with early stopping.

    Returns:
      The trained ``LinearProbe``.

    Raises:
      ValueError: for mismatched shapes, non-finite features or out-of-range labels.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxgen.generative import probe_accuracy, train_linear_probe
      >>> from jaxgen.train import FitConfig
      >>> features = jnp.concatenate([jnp.full((50, 2), -1.0), jnp.full((50, 2), 1.0)])
      >>> labels = jnp.repeat(jnp.arange(2), 50)
      >>> probe = train_linear_probe(jax.random.key(0), features, labels, 2,
      ...                            config=FitConfig(epochs=20, batch_size=50, learning_rate=0.1,
      ...                                             val_fraction=0.0, progress=False))
      >>> probe_accuracy(probe, features, labels)
      1.0
    """
    features = jnp.asarray(features, jnp.float32)
    labels = jnp.asarray(labels)
    check_array("features", features, ndim=2)
    check_array("labels", labels, ndim=1)
    check_positive("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be >= 2; got {num_classes}.")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"`labels` must have {features.shape[0]} entries (one per feature "
                         f"row); got {labels.shape[0]}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"`labels` must be integers; got dtype {labels.dtype}.")
    if bool(jnp.any((labels < 0) | (labels >= num_classes))):
        raise ValueError(f"`labels` must lie in [0, {num_classes}).")
    config = config or FitConfig(epochs=100, batch_size=256, learning_rate=3e-3,
                                 weight_decay=1e-6, val_fraction=0.1, patience=10,
                                 progress=False)
    params = jax.jit(nn.Dense(num_classes).init)(key, features[:1])

    def loss_fn(p, batch, k):
        del k
        logits = probe_logits(p, batch["h"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])

    result = fit(loss_fn, params, {"h": features, "y": labels.astype(jnp.int32)},
                 key=jax.random.fold_in(key, 1), config=config)
    return LinearProbe(result.params, int(num_classes), result)


def probe_accuracy(probe: LinearProbe, features: jax.typing.ArrayLike,
                   labels: jax.typing.ArrayLike) -> float:
    """Fraction of ``features`` ``(n, f)`` classified as their ``labels`` ``(n,)``."""
    features = jnp.asarray(features, jnp.float32)
    check_array("features", features, ndim=2)
    pred = jnp.argmax(probe_logits(probe.params, features), -1)
    return float(jnp.mean(pred == jnp.asarray(labels)))
