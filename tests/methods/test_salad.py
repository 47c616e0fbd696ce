import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers import bce_with_logits
from jaxgen.classifiers import mlp_classifier
from jaxgen.methods import cwola
from jaxgen.methods import salad as sl
from jaxgen.train import FitConfig


def _regions(key, n):
    return jax.random.randint(key, (n,), 0, 4)


def test_sa_cwola_loss_at_lambda_zero_is_the_cwola_loss():
    k = jax.random.split(jax.random.key(0), 4)
    ld, ls = jax.random.normal(k[0], (500,)), 3.0 * jax.random.normal(k[1], (400,))
    rd, rs = _regions(k[2], 500), _regions(k[3], 400)
    assert float(sl.sa_cwola_loss(ld, rd, ls, rs, 0.0)) == float(cwola.cwola_loss(ld, rd))
    lam = 0.3
    np.testing.assert_allclose(sl.sa_cwola_loss(ld, rd, ls, rs, lam),
                               cwola.cwola_loss(ld, rd) - lam * cwola.cwola_loss(ls, rs),
                               rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9])
def test_training_weights_give_the_sa_cwola_objective(lam):
    # What the engine minimises: sum(w * BCE) over data and simulation, with the weights
    # of sa_cwola_weights; divided by the data total it is the SA-CWoLa loss.
    k = jax.random.split(jax.random.key(1), 4)
    ld, ls = jax.random.normal(k[0], (500,)), jax.random.normal(k[1], (400,))
    rd, rs = _regions(k[2], 500), _regions(k[3], 400)
    wd, ws = sl.sa_cwola_weights(rd, rs, lam)
    total = (jnp.sum(wd * bce_with_logits(ld, (rd == 2) * 1.0))
             + jnp.sum(ws * bce_with_logits(ls, (rs == 2) * 1.0))) / jnp.sum(wd)
    np.testing.assert_allclose(total, sl.sa_cwola_loss(ld, rd, ls, rs, lam), rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(ws), -lam * jnp.sum(wd), rtol=1e-5, atol=1e-6)


def _toy(key, n, shift):
    # mjj ~ U(3.1, 3.9) TeV; x | mjj ~ N(mjj - 3.5 + shift, 1): the feature follows mjj.
    km, kx = jax.random.split(key)
    m = jax.random.uniform(km, (n,), minval=3.1, maxval=3.9)
    x = (m - 3.5 + shift + jax.random.normal(kx, (n,)))[:, None]
    region = (1 + (m > 3.3) + (m > 3.7)).astype(jnp.int32)
    return x, m, region


def test_salad_weights_equal_the_analytic_density_ratio_in_the_sr():
    # Data x|m ~ N(m - 3.5, 1), simulation x|m ~ N(m - 3.5 + d, 1), same mjj spectrum, so
    # log p_data/p_sim = -d (x - (m - 3.5)) + d^2/2, linear in (x, m). A logistic
    # regression f(x, m) (mlp_classifier(()) is one Dense layer) can represent it
    # exactly, so its error is the MLE's statistical one. Tolerance: with N events per
    # class (p = 3 parameters), f(1-f) >= 0.235 for |logit| <= 0.5, the Fisher information
    # is I >= 2N * 0.235 * E[z z^T] and the mean over events of the squared logit error
    # is a quadratic form in the parameter error with mean <= p / (0.47 N). Evaluated in
    # the SR, between the two sidebands, the mean is smaller still. For N = 20000 (SB
    # events per class) that is rms <= sqrt(3 / 9400) = 0.018; the quadratic form
    # (chi^2 with <= 3 dof / 3) exceeds 5.4 times its mean with probability < 1e-3,
    # so rms <= sqrt(5.4) * 0.018 = 0.042.
    d = 0.5
    kd, ks, kt = jax.random.split(jax.random.key(2), 3)
    xd, md, rd = _toy(kd, 40000, 0.0)
    xs, ms, rs = _toy(ks, 40000, d)
    cfg = FitConfig(epochs=30, batch_size=1000, learning_rate=0.05, schedule="cosine",
                    val_fraction=0.0, patience=None, progress=False)
    clf = sl.train_salad_reweighter(kt, xd, md, rd, xs, ms, rs,
                                    model=mlp_classifier(()), config=cfg)
    sr = np.asarray(rs == 2)
    w = sl.salad_weights(clf, xs[sr], ms[sr])
    true = -d * (xs[sr, 0] - (ms[sr] - 3.5)) + d**2 / 2
    rms = float(jnp.sqrt(jnp.mean((jnp.log(w) - true) ** 2)))
    n_sb = int(np.sum(np.asarray(rs) != 2))
    assert 19000 < n_sb < 21000
    assert rms < np.sqrt(5.4 * 3 / (0.47 * n_sb)), rms
    # The weighted SR simulation then has the data's SR mean of x (0 by symmetry).
    mean_w = float(jnp.sum(w * xs[sr, 0]) / jnp.sum(w))
    assert abs(mean_w - float(jnp.mean(xd[np.asarray(rd == 2), 0]))) < 0.05


def test_bad_inputs_are_rejected_by_name():
    x = jnp.zeros((12, 2))
    m = jnp.linspace(3.1, 3.9, 12)
    r = (1 + (m > 3.3) + (m > 3.7)).astype(jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`x_sim` must have 2 features"):
        sl.salad_hunt(key, x, m, r, jnp.zeros((12, 3)), m, r)
    with pytest.raises(ValueError, match="`mjj_data` contains NaN"):
        sl.salad_hunt(key, x, m.at[0].set(jnp.nan), r, x, m, r)
    with pytest.raises(ValueError, match="`x_data` contains NaN"):
        sl.salad_hunt(key, x.at[0, 0].set(jnp.inf), m, r, x, m, r)
    with pytest.raises(ValueError, match="`region_sim` must hold 0"):
        sl.salad_hunt(key, x, m, r, x, m, r.at[2].set(7))
    with pytest.raises(ValueError, match="`region_data`: the signal region"):
        sl.salad_hunt(key, x, m, jnp.where(r == 2, 1, r), x, m, r)
    with pytest.raises(ValueError, match="`mjj_sim` must have shape"):
        sl.train_salad_reweighter(key, x, m, r, x, m[:5], r)
    with pytest.raises(ValueError, match="`x_sim` must have 2 features"):
        sl.sa_cwola_hunt(key, x, r, jnp.zeros((12, 1)), r)
    with pytest.raises(ValueError, match="`region_sim`: the signal region"):
        sl.sa_cwola_hunt(key, x, r, x, jnp.where(r == 2, 0, r))
    for lam in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match="`lam`"):
            sl.sa_cwola_loss(jnp.zeros(12), r, jnp.zeros(12), r, lam)
