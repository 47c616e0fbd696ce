r"""Multi-event classifiers: summed logits, deep sets, and per-instance read-off.

Nachman & Thaler, "E Pluribus Unum Ex Machina: Learning from Many Collider Events at
Once", arXiv:2101.07263.

For independent events the optimal classifier of a set ``{x_1..x_N}`` has

.. math::
   \operatorname{logit} F_N(x_1, \dots, x_N) = \sum_i \operatorname{logit} f(x_i)

with ``f`` the optimal per-instance classifier (equal class priors). Conversely a set
network of the form ``F = sigmoid(sum_i g(x_i))`` trained on sets has ``g = logit f``.
Sets are batch-first ``(n_sets, set_size, dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen._checks import check_array
from jaxgen._checks import check_positive
from jaxgen.classifiers.classifier import Classifier
from jaxgen.classifiers.classifier import as_events
from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.nn import MLP
from jaxgen.nn import DeepSets


def make_sets(x: jax.typing.ArrayLike, set_size: int) -> jax.Array:
    """Groups consecutive events into sets: ``(n, d) -> (n // set_size, set_size, d)``.

    A remainder of fewer than ``set_size`` events is dropped.

    Raises:
      ValueError: if there are fewer events than ``set_size``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxgen.classifiers import make_sets
      >>> make_sets(jnp.zeros((10, 2)), 3).shape     # the last event is left out
      (3, 3, 2)
    """
    check_positive("set_size", set_size)
    x = as_events("x", x)
    check_array("x", x, ndim=2)
    n_sets = x.shape[0] // set_size
    if n_sets < 1:
        raise ValueError(f"`x` has {x.shape[0]} events, fewer than `set_size`={set_size}.")
    return x[: n_sets * set_size].reshape(n_sets, set_size, x.shape[-1])


def set_logits_from_instance(clf: Classifier, sets: jax.typing.ArrayLike) -> jax.Array:
    """The optimal multi-event classifier built from a per-instance one: summed logits.

    Args:
      clf: a per-instance classifier trained on events ``(n, d)``.
      sets: ``(n_sets, set_size, d)``.

    Returns:
      ``(n_sets,)`` set logits (``(K, n_sets)`` for an ensemble).
    """
    sets = jnp.asarray(sets, jnp.float32)
    check_array("sets", sets, ndim=3)
    n_sets, size, dim = sets.shape
    logits = classifier_logits(clf, sets.reshape(n_sets * size, dim))
    return jnp.sum(logits.reshape(logits.shape[:-1] + (n_sets, size)), axis=-1)


def deep_sets_classifier(
    phi_features: Sequence[int] = (32, 32), rho_features: Sequence[int] = (32,)
) -> nn.Module:
    """A permutation-invariant set classifier ``rho(sum_i phi(x_i))`` with one logit.

    Args:
      phi_features: per-event network widths.
      rho_features: widths of the network on the pooled summary (a logit layer is
        appended).

    Returns:
      A ``DeepSets`` module mapping ``(n_sets, set_size, d)`` to ``(n_sets, 1)``.

    Example:
      >>> import jax
      >>> from jaxgen.classifiers import deep_sets_classifier, make_sets
      >>> sets = make_sets(jax.random.normal(jax.random.key(0), (40, 2)), set_size=4)
      >>> model = deep_sets_classifier((8,), (8,))
      >>> params = model.init(jax.random.key(1), sets)
      >>> sets.shape, model.apply(params, sets).shape      # one logit per set of 4 events
      ((10, 4, 2), (10, 1))
    """
    return DeepSets(tuple(phi_features), tuple(rho_features) + (1,), pooling="sum")


class LogitSum(nn.Module):
    """A set classifier of the form ``logit F = sum_i g(x_i)``.

    Trained on sets, its per-event network ``g`` is a per-instance classifier logit
    (arXiv:2101.07263). Maps ``(..., set_size, d)`` to ``(..., 1)``.

    Attributes:
      features: hidden widths of ``g`` (an output of width 1 is appended).
    """

    features: Sequence[int] = (32, 32)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns the set logit of shape ``(..., 1)``."""
        g = MLP(tuple(self.features) + (1,), name="g")
        return jnp.sum(g(x), axis=-2)


def instance_logits_from_logit_sum(clf: Classifier, x: jax.typing.ArrayLike) -> jax.Array:
    """Reads the per-instance classifier ``g`` off a trained ``LogitSum`` set classifier.

    Args:
      clf: a classifier whose model is a ``LogitSum``.
      x: events ``(n, d)``.

    Returns:
      ``(n,)`` per-event logits (``(K, n)`` for an ensemble).

    Raises:
      ValueError: if ``clf.model`` is not a ``LogitSum``.
    """
    if not isinstance(clf.model, LogitSum):
        raise ValueError(f"`clf.model` must be a LogitSum; got {type(clf.model).__name__}.")
    x = as_events("x", x)
    check_array("x", x, ndim=2)
    # A set of one event: sum over a single element is g(x) itself.
    return classifier_logits(clf, x[:, None, :])
