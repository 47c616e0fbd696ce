import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from jaxgen.metrics import anomaly


@pytest.fixture(scope="module")
def sample():
    # Continuous scores (no ties): every event is its own ROC point in both libraries.
    rng = np.random.default_rng(1)
    n_b, n_s = 4000, 400
    s = np.concatenate([rng.normal(0, 1, n_b), rng.normal(1.5, 1, n_s)]).astype(np.float32)
    y = np.concatenate([np.zeros(n_b), np.ones(n_s)]).astype(np.int32)
    return s, y


def _sk(s, y, w=None):
    fpr, tpr, _ = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    return fpr, tpr


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit])
def test_roc_matches_sklearn(sample, transform):
    s, y = sample
    fpr, tpr = transform(anomaly.roc)(s, y)
    sk_fpr, sk_tpr = _sk(s, y)
    np.testing.assert_allclose(np.asarray(fpr), sk_fpr, atol=1e-6)
    np.testing.assert_allclose(np.asarray(tpr), sk_tpr, atol=1e-6)
    area = np.trapezoid(np.asarray(tpr), np.asarray(fpr))
    assert area == pytest.approx(roc_auc_score(y, s), abs=1e-6)


def test_roc_with_ties_matches_sklearn_points():
    rng = np.random.default_rng(2)
    s = np.round(rng.normal(size=300), 1).astype(np.float32)
    y = (rng.uniform(size=300) < 0.3).astype(np.int32)
    fpr, tpr = anomaly.roc(s, y)
    pts = np.unique(np.stack([np.asarray(fpr), np.asarray(tpr)], 1).round(6), axis=0)
    sk_fpr, sk_tpr = _sk(s, y)
    sk_pts = np.unique(np.stack([sk_fpr, sk_tpr], 1).round(6), axis=0)
    np.testing.assert_allclose(pts, sk_pts, atol=1e-6)


def test_sic_count_rule_max_and_window_match_sklearn(sample):
    s, y = sample
    fpr, tpr = _sk(s, y)
    n_b = int((y == 0).sum())
    ok = np.round(fpr * n_b) >= 50
    ref_sic = np.where(ok, tpr / np.sqrt(np.where(fpr > 0, fpr, 1)), np.nan)
    c = anomaly.sic_curve(s, y)
    np.testing.assert_allclose(np.asarray(c.sic), ref_sic, rtol=1e-5, equal_nan=True)
    assert np.asarray(c.n_background).max() == n_b
    assert float(anomaly.max_sic(s, y)) == pytest.approx(np.nanmax(ref_sic), rel=1e-5)
    # Without the rule the extreme tail (1 background event) takes over.
    assert float(anomaly.max_sic(s, y, min_background=0)) >= float(anomaly.max_sic(s, y))
    win = (tpr >= 0.18) & (tpr <= 0.23) & ok
    assert float(anomaly.sic_in_tpr_window(s, y)) == pytest.approx(
        ref_sic[win].mean(), rel=1e-5)
    for eff in (0.2013, 0.5021, 0.9007):  # off the tpr grid (steps of 1/400)
        ref = 1 / np.interp(eff, tpr, fpr)
        assert float(anomaly.background_rejection(s, y, signal_efficiency=eff)) == (
            pytest.approx(ref, rel=1e-4))
    assert float(jax.jit(anomaly.max_sic)(s, y)) == pytest.approx(float(anomaly.max_sic(s, y)))


def test_weights_scale_rates_but_the_rule_counts_events(sample):
    s, y = sample
    w = np.where(y == 0, 100.0, 1.0).astype(np.float32)
    c = anomaly.sic_curve(s, y, w)
    c0 = anomaly.sic_curve(s, y)
    # Uniform background weights leave the rates, SIC and counts unchanged.
    np.testing.assert_allclose(np.asarray(c.sic), np.asarray(c0.sic), rtol=1e-4,
                               equal_nan=True)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, size=s.size).astype(np.float32)
    fpr, tpr = _sk(s, y, w)
    got_fpr, got_tpr = anomaly.roc(s, y, w)
    np.testing.assert_allclose(np.asarray(got_fpr), fpr, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_tpr), tpr, atol=1e-5)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(3), np.array([0, 1, 2])), "only 0 and 1"),
        ((np.zeros(3), np.array([0, 1])), "shape"),
        ((np.array([0.0, np.nan, 1.0]), np.array([0, 1, 0])), "scores"),
        ((np.zeros(3), np.array([1, 1, 1])), "both"),
        ((np.zeros((3, 2)), np.array([0, 1, 0])), "scores"),
    ],
)
def test_bad_inputs_rejected(args, match):
    with pytest.raises(ValueError, match=match):
        anomaly.max_sic(*args)


def test_bad_options_rejected(sample):
    s, y = sample
    with pytest.raises(ValueError, match="window"):
        anomaly.sic_in_tpr_window(s, y, window=(0.3, 0.2))
    with pytest.raises(ValueError, match="signal_efficiency"):
        anomaly.background_rejection(s, y, signal_efficiency=0.0)
    with pytest.raises(ValueError, match="weights"):
        anomaly.roc(s, y, jnp.ones(3))
