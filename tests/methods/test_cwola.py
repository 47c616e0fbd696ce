import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers import bce_with_logits
from jaxgen.classifiers import classifier_logits
from jaxgen.methods import cwola
from jaxgen.train import FitConfig

# A tiny network and short training: these tests check bookkeeping, not performance.
NET = cwola.cwola_network((8,), dropout=0.0)
CFG = FitConfig(epochs=3, batch_size=100, learning_rate=1e-2, progress=False)


def _regions(key, n):
    return jax.random.choice(key, 4, (n,), p=jnp.array([0.2, 0.3, 0.3, 0.2])).astype(jnp.int32)


def test_class_weights_balance_sr_sb_and_the_two_sidebands():
    r = _regions(jax.random.key(0), 5000)
    w = np.asarray(cwola.cwola_class_weights(r))
    r = np.asarray(r)
    n = np.sum(r > 0)
    np.testing.assert_allclose(w[r == 2].sum(), n / 2, rtol=1e-5)
    np.testing.assert_allclose(w[r == 1].sum(), n / 4, rtol=1e-5)
    np.testing.assert_allclose(w[r == 3].sum(), n / 4, rtol=1e-5)
    assert np.all(w[r == 0] == 0)
    # Per region the weight is constant: N/(2 N_SR) and N/(4 N_SB).
    np.testing.assert_allclose(w[r == 2], n / (2 * np.sum(r == 2)), rtol=1e-6)
    np.testing.assert_allclose(w[r == 1], n / (4 * np.sum(r == 1)), rtol=1e-6)


def test_class_weights_use_only_the_mask_and_handle_one_empty_sideband():
    r = jnp.array([2, 2, 2, 1, 1, 3, 3, 3, 3, 0])
    mask = jnp.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], bool)
    w = np.asarray(cwola.cwola_class_weights(r, mask))
    # Masked counts: N_SR = 2, N_low = 2, N_high = 2, N = 6.
    np.testing.assert_allclose(w, [1.5, 1.5, 0, 0.75, 0.75, 0.75, 0.75, 0, 0, 0], rtol=1e-6)
    w1 = np.asarray(cwola.cwola_class_weights(jnp.array([2, 1, 1, 1])))
    np.testing.assert_allclose([w1[0], w1[1:].sum()], [2.0, 2.0], rtol=1e-6)


def test_cwola_loss_is_the_class_weighted_bce():
    key_l, key_r = jax.random.split(jax.random.key(1))
    r = _regions(key_r, 300)
    logits = jax.random.normal(key_l, (300,))
    w = cwola.cwola_class_weights(r)
    want = jnp.sum(w * bce_with_logits(logits, (r == 2).astype(jnp.float32))) / jnp.sum(w)
    np.testing.assert_allclose(cwola.cwola_loss(logits, r), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(cwola._weighted_bce)(
        logits, (r == 2).astype(jnp.float32), w), want, rtol=1e-6)


def test_out_of_fold_scores_use_only_the_events_own_fold():
    # Member k outputs the constant k: fold f's score is the mean of its members' ids.
    n_folds, n_members, n = 3, 4, 50
    probs = jnp.repeat(jnp.arange(n_folds * n_members, dtype=jnp.float32)[:, None], n, 1)
    folds = jax.random.randint(jax.random.key(2), (n,), 0, n_folds)
    s = cwola.out_of_fold_scores(probs, folds, n_members)
    np.testing.assert_allclose(s, n_members * np.asarray(folds) + (n_members - 1) / 2)
    np.testing.assert_array_equal(cwola.member_folds(3, 2), [0, 0, 1, 1, 2, 2])


def _hunt(x, r, folds):
    return cwola.cwola_hunt(jax.random.key(5), x, r, n_folds=2, n_members=2, model=NET,
                            config=CFG, folds=folds)


def test_no_model_ever_sees_the_events_it_scores():
    # By construction: rewrite every label of fold 0 (and shuffle its feature rows among
    # themselves). The members of fold 0 must come out bit for bit the same, so nothing
    # about fold-0 events reaches the models that score them; fold-1 members do change.
    n = 600
    k = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(k[0], (n, 3))
    r = _regions(k[1], n)
    folds = cwola.assign_folds(k[2], n, 2)
    res = _hunt(x, r, folds)
    f0 = np.flatnonzero(np.asarray(folds) == 0)
    r2 = np.asarray(r).copy()
    r2[f0] = np.asarray(_regions(k[3], n))[f0]
    r2[f0[:4]] = [2, 1, 3, 0]  # make sure fold-0 labels really change
    x2 = np.asarray(x).copy()
    x2[f0] = x2[np.random.default_rng(0).permutation(f0)]
    res2 = _hunt(jnp.asarray(x2), jnp.asarray(r2), folds)
    mf = np.asarray(res.member_folds)
    leaves = jax.tree_util.tree_leaves(res.classifier.params)
    leaves2 = jax.tree_util.tree_leaves(res2.classifier.params)
    for a, b in zip(leaves, leaves2, strict=True):
        # Shuffled rows change the standardisation's float sums in the last bits only.
        np.testing.assert_allclose(np.asarray(a)[mf == 0], np.asarray(b)[mf == 0],
                                   rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(np.asarray(a)[mf == 1], np.asarray(b)[mf == 1])
                   for a, b in zip(leaves, leaves2, strict=True))
    # The reported scores are exactly the own-fold ensemble means.
    probs = jax.nn.sigmoid(classifier_logits(res.classifier, x))
    manual = np.where(np.asarray(folds) == 0, probs[:2].mean(0), probs[2:].mean(0))
    np.testing.assert_allclose(res.scores, manual, rtol=1e-6)
    np.testing.assert_allclose(res.score(x, folds), manual, rtol=1e-6)
    assert res.scores.shape == (n,) and res.classifier.num_members == 4


def test_selections_keep_the_requested_fractions():
    s = jax.random.uniform(jax.random.key(4), (20000,))
    t, masks = cwola.select_at_efficiencies(s)
    np.testing.assert_array_equal(np.asarray(masks).sum(1), [2000, 200, 40])
    ref = jnp.arange(20000) < 5000
    t, masks = cwola.select_at_efficiencies(s, (0.1,), reference=ref)
    assert int(jnp.sum(masks[0] & ref)) == 500
    assert float(t[0]) == float(jnp.sort(s[:5000])[-500])


def test_bad_inputs_are_rejected_by_name():
    x = jnp.zeros((10, 2))
    r = jnp.array([0, 1, 2, 3] * 2 + [2, 2])
    with pytest.raises(ValueError, match="`x` contains NaN"):
        cwola.cwola_hunt(jax.random.key(0), x.at[3, 1].set(jnp.nan), r)
    with pytest.raises(ValueError, match="`x` must have 2 dimension"):
        cwola.cwola_hunt(jax.random.key(0), jnp.zeros(10), r)
    with pytest.raises(ValueError, match="`region` must hold 0"):
        cwola.cwola_hunt(jax.random.key(0), x, r.at[0].set(4))
    with pytest.raises(ValueError, match="`region` must hold 0"):
        cwola.cwola_hunt(jax.random.key(0), x, r.at[0].set(-1))
    with pytest.raises(ValueError, match=r"`region` must have shape \(10,\)"):
        cwola.cwola_hunt(jax.random.key(0), x, r[:9])
    with pytest.raises(ValueError, match="`region` must hold integers"):
        cwola.cwola_hunt(jax.random.key(0), x, r.astype(jnp.float32))
    with pytest.raises(ValueError, match="signal region .* is empty"):
        cwola.cwola_hunt(jax.random.key(0), x, jnp.where(r == 2, 1, r))
    with pytest.raises(ValueError, match="both sidebands"):
        cwola.cwola_hunt(jax.random.key(0), x, jnp.where(r % 2 == 1, 0, r))
    with pytest.raises(ValueError, match="`n_folds`"):
        cwola.cwola_hunt(jax.random.key(0), x, r, n_folds=1)
    with pytest.raises(ValueError, match="`folds` must lie"):
        cwola.cwola_hunt(jax.random.key(0), x, r, n_folds=2, folds=jnp.full(10, 2))
    with pytest.raises(ValueError, match="`efficiencies`"):
        cwola.select_at_efficiencies(jnp.zeros(10), (0.0,))
    with pytest.raises(ValueError, match="`dropout`"):
        cwola.cwola_network(dropout=1.0)
