import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.methods.ibu import ibu
from jaxgen.methods.ibu import response_matrix


def test_pyunfold_documentation_example():
    # pyunfold 0.5.0 docs: data [100, 150], R = [[.9, .1], [.1, .9]], eff [1, 1] stops
    # after 4 iterations (ks < 0.01) at [94.32086967, 155.67913033].
    res = ibu(
        jnp.array([100.0, 150.0]),
        jnp.array([[0.9, 0.1], [0.1, 0.9]]),
        efficiencies=jnp.array([1.0, 1.0]),
    )
    assert res.num_iterations == 4
    np.testing.assert_allclose(np.asarray(res.unfolded), [94.32086967, 155.67913033], rtol=1e-5)
    # Many iterations converge to the matrix inverse [93.75, 156.25].
    far = ibu(
        jnp.array([100.0, 150.0]),
        jnp.array([[0.9, 0.1], [0.1, 0.9]]),
        max_iter=400,
        ts_stopping=None,
    )
    np.testing.assert_allclose(np.asarray(far.unfolded), [93.75, 156.25], rtol=1e-3)


def test_efficiency_correction_recovers_truth_of_folded_spectrum():
    truth = jnp.array([50.0, 120.0, 80.0])
    resp = jnp.array([[0.6, 0.1, 0.0], [0.2, 0.5, 0.1], [0.0, 0.2, 0.6]])  # eff .8 .8 .7
    data = resp @ truth
    res = ibu(data, resp, max_iter=2000, ts_stopping=None)
    np.testing.assert_allclose(np.asarray(res.unfolded), np.asarray(truth), rtol=2e-2)


def test_response_matrix():
    g = jnp.array([0, 0, 1, 1])
    r = jnp.array([0, 1, 1, 0])
    resp, eff, truth = response_matrix(g, r, 2, 2, pass_reco=jnp.array([True, True, True, False]))
    np.testing.assert_allclose(np.asarray(resp), [[0.5, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(eff), [1.0, 0.5])
    np.testing.assert_allclose(np.asarray(truth), [2.0, 2.0])


R = jnp.eye(2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": jnp.ones(3), "response": R}, "data"),
        ({"data": jnp.ones(2), "response": -R}, "non-negative"),
        ({"data": jnp.ones(2), "response": R, "prior": jnp.array([0.2, 0.2])}, "prior"),
        ({"data": jnp.ones(2), "response": R, "ts": "foo"}, "ts"),
        (
            {"data": jnp.ones(2), "response": R, "efficiencies": jnp.array([1.5, 1.0])},
            "efficiencies",
        ),
        ({"data": jnp.array([1.0, jnp.nan]), "response": R}, "NaN"),
        ({"data": jnp.array([1.0, -0.5]), "response": R}, "`data` must be non-negative"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ibu(**kwargs)
