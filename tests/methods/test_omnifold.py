import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.methods import omnifold as of
from jaxgen.methods.ibu import ibu
from jaxgen.methods.ibu import response_matrix
from jaxgen.train import FitConfig

EDGES = np.linspace(-4, 4, 21)
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])


def _gaussian(key, n, mc=(0.0, 1.0), data=(0.2, 0.8), eps=0.5):
    k = jax.random.split(key, 4)
    gen = mc[0] + mc[1] * jax.random.normal(k[0], (n,))
    sim = gen + eps * jax.random.normal(k[1], (n,))
    truth = data[0] + data[1] * jax.random.normal(k[2], (n,))
    return gen, sim, truth, truth + eps * jax.random.normal(k[3], (n,))


def _bins(x):
    return np.clip(np.digitize(np.asarray(x), EDGES) - 1, 0, len(CENTRES) - 1)


def test_closed_form_recursion_matches_reference_table():
    # Reference values (notes, recomputed with fine-bin IBU): iterations 1..5.
    m, s = of.gaussian_ibu_moments(
        prior_mean=0.0, prior_std=1.0, data_mean=0.2, data_std=0.8, smearing=0.5, n_iterations=5
    )
    np.testing.assert_allclose(m, [0.160, 0.1902, 0.1974, 0.1993, 0.1998], atol=1e-4)
    np.testing.assert_allclose(s, [0.8773, 0.8341, 0.8158, 0.8075, 0.8036], atol=1e-4)
    m, s = of.gaussian_ibu_moments(
        prior_mean=0.2, prior_std=0.8, data_mean=0.0, data_std=1.0, smearing=0.5, n_iterations=2
    )
    np.testing.assert_allclose(m, [0.0562, 0.0131], atol=1e-4)
    np.testing.assert_allclose(s, [0.9089, 0.9636], atol=1e-4)


def test_binned_omnifold_with_exact_ratios_equals_ibu_each_iteration():
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(0), 20_000)
    gb, sb, db = _bins(gen), _bins(sim), _bins(data)
    n_it = 5
    est = of.histogram_ratio(EDGES)
    res = of.omnifold(
        jax.random.PRNGKey(1),
        gen=CENTRES[gb],
        sim=CENTRES[sb],
        data=CENTRES[db],
        n_iterations=n_it,
        step1=est,
        step2=est,
    )
    nb = len(CENTRES)
    resp, eff, truth = response_matrix(gb, sb, nb, nb)
    d = np.bincount(db, minlength=nb).astype(np.float32)
    ref = ibu(
        d,
        resp,
        efficiencies=eff,
        prior=np.asarray(truth) / float(truth.sum()),
        max_iter=n_it,
        ts_stopping=None,
    )
    for k in range(n_it):
        unf = np.bincount(gb, weights=np.asarray(res.push_weights[k, 0]), minlength=nb)
        # float32 accumulations over 2e4 events: relative error ~1e-5 per bin.
        np.testing.assert_allclose(unf, np.asarray(ref.iterations[k]), rtol=2e-4, atol=1e-2)


def test_neural_omnifold_follows_gaussian_ibu_recursion():
    n = 20_000
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(2), n)
    cfg = FitConfig(epochs=10, batch_size=1000, schedule="constant", clip_norm=None, progress=False)
    est = of.classifier_ratio(config=cfg)
    res = of.omnifold(
        jax.random.PRNGKey(3), gen=gen, sim=sim, data=data, n_iterations=3, step1=est, step2=est
    )
    mean, std = of.weighted_moments(gen, res.push_weights[:, 0])
    # Reference: the recursion from this sample's moments (removes the sample noise).
    dvar = float(jnp.var(data)) - 0.25
    rm, rs = of.gaussian_ibu_moments(
        prior_mean=float(jnp.mean(gen)),
        prior_std=float(jnp.std(gen)),
        data_mean=float(jnp.mean(data)),
        data_std=float(np.sqrt(dvar)),
        smearing=0.5,
        n_iterations=3,
    )
    # Tolerance: each classifier is learned from n = 2e4 events per class; its ratio
    # error shifts the weighted mean by ~ sqrt(2/n) = 0.010 per step, and the push step
    # propagates the pull step's error with gain <= 1/g ~ 1.3 -> sd ~ 0.013 per
    # iteration; 3 sd = 0.04. The std has about the same error (sqrt(2) x 0.7 sd).
    np.testing.assert_allclose(np.asarray(mean), rm, atol=0.04)
    np.testing.assert_allclose(np.asarray(std), rs, atol=0.04)
    assert np.all(np.isfinite(np.asarray(res.pull_weights)))


def test_background_subtraction_with_negative_weights_is_exact_for_exact_ratios():
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(4), 5000)
    bkg = 1.5 + 0.5 * jax.random.normal(jax.random.PRNGKey(5), (1000,))
    # The same background events in data and (negatively weighted) in the subtraction.
    x, w = of.background_subtracted_data(jnp.concatenate([data, bkg]), bkg)
    est = of.histogram_ratio(EDGES)
    kw = dict(
        gen=CENTRES[_bins(gen)], sim=CENTRES[_bins(sim)], n_iterations=2, step1=est, step2=est
    )
    a = of.omnifold(jax.random.PRNGKey(6), data=CENTRES[_bins(x[:, 0])], data_weights=w, **kw)
    b = of.omnifold(jax.random.PRNGKey(6), data=CENTRES[_bins(data)], **kw)
    np.testing.assert_allclose(
        np.asarray(a.push_weights), np.asarray(b.push_weights), rtol=1e-4, atol=1e-5
    )


def test_pass_flags_fakes_and_bootstrap_ensemble():
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(7), 4000)
    pass_reco = np.array(jax.random.uniform(jax.random.PRNGKey(8), (4000,)) > 0.2)
    pass_gen = np.ones(4000, bool)
    pass_gen[:300] = False  # fakes
    pass_reco[:300] = True
    est = of.histogram_ratio(EDGES)
    res = of.omnifold(
        jax.random.PRNGKey(9),
        gen=CENTRES[_bins(gen)],
        sim=CENTRES[_bins(sim)],
        data=CENTRES[_bins(data)],
        pass_reco=pass_reco,
        pass_gen=pass_gen,
        n_iterations=2,
        step1=est,
        step2=est,
        ensemble_size=3,
        bootstrap=True,
        missing="prior",
        fakes="prior",
    )
    assert res.pull_weights.shape == res.push_weights.shape == (2, 3, 4000)
    push, pull = np.asarray(res.push_weights), np.asarray(res.pull_weights)
    # Fakes keep nu = 1; events failing reco keep the previous push weight in step 1.
    np.testing.assert_array_equal(push[:, :, :300], 1.0)
    np.testing.assert_allclose(pull[1][:, ~pass_reco], push[0][:, ~pass_reco])
    np.testing.assert_array_equal(pull[0][:, ~pass_reco], 1.0)
    # Bootstrap members see different data weights, so their weights differ.
    assert float(np.abs(push[-1, 0] - push[-1, 1]).max()) > 0


def test_inefficient_binned_omnifold_with_average_rule_equals_ibu_with_efficiencies():
    """Steps 1b/2b with exact ratios reproduce IBU's efficiency correction bin by bin."""
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(10), 20_000)
    gb, sb, db = _bins(gen), _bins(sim), _bins(data)
    # Efficiency falling from 0.9 to 0.3 across the generator-level range.
    eff_true = 0.3 + 0.6 * jax.nn.sigmoid(-2.0 * jnp.asarray(CENTRES[gb]))
    pass_reco = np.asarray(jax.random.uniform(jax.random.PRNGKey(11), (20_000,)) < eff_true)
    est = of.histogram_ratio(EDGES)
    kw = dict(
        gen=CENTRES[gb],
        sim=CENTRES[sb],
        data=CENTRES[db][np.asarray(jax.random.uniform(jax.random.PRNGKey(12), (20_000,)) < 0.6)],
        pass_reco=pass_reco,
        n_iterations=4,
        step1=est,
        step2=est,
    )
    res = of.omnifold(jax.random.PRNGKey(13), missing="average", **kw)
    nb = len(CENTRES)
    resp, eff, truth = response_matrix(gb, sb, nb, nb, pass_reco=pass_reco)
    d = np.bincount(_bins(kw["data"]), minlength=nb).astype(np.float32)
    ref = ibu(
        d,
        resp,
        efficiencies=eff,
        prior=np.asarray(truth) / float(truth.sum()),
        max_iter=4,
        ts_stopping=None,
    )
    for k in range(4):
        unf = np.bincount(gb, weights=np.asarray(res.push_weights[k, 0]), minlength=nb)
        # float32 accumulations over 2e4 events: relative error ~1e-5 per bin.
        np.testing.assert_allclose(unf, np.asarray(ref.iterations[k]), rtol=2e-4, atol=1e-2)
    # The pip package's rule ("prior") does not correct for the efficiency: the unfolded
    # total after one iteration falls short of IBU's by the missing events' share.
    prior = of.omnifold(jax.random.PRNGKey(13), missing="prior", **kw)
    total_prior = float(np.sum(prior.push_weights[0, 0]))
    assert total_prior < 0.9 * float(np.sum(ref.iterations[0]))


def test_average_rule_gives_fakes_the_mean_push_weight_of_their_sim_bin():
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(14), 8000)
    gb, sb = _bins(gen), _bins(sim)
    pass_gen = np.asarray(jax.random.uniform(jax.random.PRNGKey(15), (8000,)) > 0.15)
    est = of.histogram_ratio(EDGES)
    res = of.omnifold(
        jax.random.PRNGKey(16),
        gen=CENTRES[gb],
        sim=CENTRES[sb],
        data=CENTRES[_bins(data)],
        pass_gen=pass_gen,
        n_iterations=2,
        step1=est,
        step2=est,
        fakes="average",
    )
    nu = np.asarray(res.push_weights[-1, 0])
    for b in np.unique(sb[~pass_gen]):
        matched = (sb == b) & pass_gen
        np.testing.assert_allclose(nu[(sb == b) & ~pass_gen], nu[matched].mean(), rtol=1e-4)


G = jnp.zeros(10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gen": G, "sim": jnp.zeros(9), "data": G}, "sim"),
        ({"gen": G, "sim": G, "data": jnp.zeros((10, 2))}, "data"),
        ({"gen": G, "sim": G, "data": G, "pass_reco": np.zeros(10, bool)}, "pass_reco"),
        ({"gen": G, "sim": G, "data": G, "pass_gen": np.full(10, 2)}, "pass_gen"),
        ({"gen": G, "sim": G, "data": G, "data_weights": -jnp.ones(10)}, "data_weights"),
        ({"gen": G.at[0].set(jnp.nan), "sim": G, "data": G}, "gen"),
        ({"gen": G, "sim": G, "data": G, "n_iterations": 0}, "n_iterations"),
        ({"gen": G, "sim": G, "data": G, "mc_weights": jnp.ones(3)}, "mc_weights"),
        ({"gen": G, "sim": G, "data": G, "missing": "drop"}, "missing"),
        ({"gen": G, "sim": G, "data": G, "fakes": "drop"}, "fakes"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        of.omnifold(jax.random.PRNGKey(0), **kwargs)


def test_classifier_ratio_averages_members_per_ratio():
    # K = 2 OmniFold members, each the average of M = 3 classifiers trained in one vmap.
    gen, sim, _, data = _gaussian(jax.random.PRNGKey(17), 2000)
    cfg = FitConfig(epochs=2, batch_size=500, schedule="constant", clip_norm=None, progress=False)
    est = of.classifier_ratio(config=cfg, members=3)
    w = jnp.ones((2, 2000))
    ratio, clf = est(jax.random.PRNGKey(18), sim[:, None], w, data[:, None], w, None)
    assert ratio.shape == (2, 2000)
    assert clf.num_members == 6
    logits = np.asarray(classifier_logits(clf, sim[:, None]))
    np.testing.assert_allclose(
        np.asarray(ratio), np.exp(logits).reshape(2, 3, -1).mean(1), rtol=1e-5
    )
    with pytest.raises(ValueError, match="members"):
        of.classifier_ratio(members=0)


WIDE = np.linspace(-12, 4, 33)  # bins 0.5; the dummy value -10 of failed selections inside
WIDE_C = 0.5 * (WIDE[1:] + WIDE[:-1])


def _acceptance_variant(key, n, fake=0.2, bkg=0.1, ineff=0.1):
    """Gaussian example with inefficiency, fakes (same in MC and data) and background."""
    k = jax.random.split(key, 8)
    gen, sim, _, data = _gaussian(k[0], n)
    n_f, n_b = int(fake * n), int(bkg * n)
    mc_reco = np.asarray(jax.random.uniform(k[1], (n,)) >= ineff)
    data_reco = np.asarray(jax.random.uniform(k[2], (n,)) >= ineff)
    mc_fake = 1.1 * jax.random.normal(k[3], (n_f,))
    bkg_x = 1.2 * jax.random.normal(k[4], (n_b,))
    observed = jnp.concatenate([data[data_reco], 1.1 * jax.random.normal(k[5], (n_f,)), bkg_x])
    x, w = of.background_subtracted_data(observed, bkg_x)  # exact subtraction
    return dict(
        gen=jnp.concatenate([gen, jnp.full((n_f,), -10.0)]),
        sim=jnp.concatenate([jnp.where(mc_reco, sim, -10.0), mc_fake]),
        pass_reco=np.concatenate([mc_reco, np.ones(n_f, bool)]),
        pass_gen=np.concatenate([np.ones(n, bool), np.zeros(n_f, bool)]),
        data=x[:, 0],
        data_weights=w,
    )


def _ibu_with_fakes_subtracted(v, n_it, edges):
    """IBU with efficiencies on the data minus the MC fakes: (n_it, bins) and the bins."""
    nb = edges.size - 1
    b = lambda x: np.clip(np.digitize(np.asarray(x), edges) - 1, 0, nb - 1)  # noqa: E731
    sel = v["pass_gen"]
    resp, eff, truth = response_matrix(
        b(v["gen"][sel]), b(v["sim"][sel]), nb, nb, pass_reco=v["pass_reco"][sel]
    )
    d = np.bincount(b(v["data"]), weights=np.asarray(v["data_weights"]), minlength=nb)
    d = d - np.bincount(b(v["sim"][~sel]), minlength=nb)
    ref = ibu(
        np.clip(d, 0, None).astype(np.float32),
        resp,
        efficiencies=eff,
        prior=np.asarray(truth) / float(truth.sum()),
        max_iter=n_it,
        ts_stopping=None,
    )
    return np.asarray(ref.iterations), b(v["gen"][sel])


def test_acceptance_effects_binned_omnifold_equals_ibu_each_iteration():
    """Inefficiency (step 1b), MC fakes subtracted, background subtracted: exactly IBU."""
    v = _acceptance_variant(jax.random.PRNGKey(20), 20_000)
    b = lambda x: WIDE_C[np.clip(np.digitize(np.asarray(x), WIDE) - 1, 0, WIDE_C.size - 1)]  # noqa: E731
    est = of.histogram_ratio(WIDE)
    kw = dict(
        gen=b(v["gen"]),
        sim=b(v["sim"]),
        data=b(v["data"]),
        data_weights=v["data_weights"],
        pass_reco=v["pass_reco"],
        pass_gen=v["pass_gen"],
        n_iterations=4,
        step1=est,
        step2=est,
    )
    res = of.omnifold(jax.random.PRNGKey(21), **kw)
    ref, gb = _ibu_with_fakes_subtracted(v, 4, WIDE)
    sel = v["pass_gen"]
    push = np.asarray(res.push_weights[:, 0])
    np.testing.assert_array_equal(push[:, ~sel], 1.0)  # fakes are not unfolded
    for k in range(4):
        unf = np.bincount(gb, weights=push[k, sel], minlength=WIDE_C.size)
        # float32 accumulations over 2e4 events: relative error ~1e-5 per bin.
        np.testing.assert_allclose(unf, ref[k], rtol=2e-4, atol=2e-2)
    # Andreassen's step 2b (fakes take E[nu | sim]) lets the fake rate follow the signal,
    # although data and MC have the same fakes: the unfolded mean then lags IBU's.
    avg = of.omnifold(jax.random.PRNGKey(21), fakes="average", **kw)
    m_avg, _ = of.weighted_moments(kw["gen"][sel], avg.push_weights[-1, 0, sel])
    m_ibu = float(ref[-1] @ WIDE_C[: ref.shape[1]] / ref[-1].sum())
    assert m_ibu - float(m_avg) > 0.02


def test_neural_omnifold_with_acceptance_effects_follows_ibu_each_iteration():
    n = 20_000
    v = _acceptance_variant(jax.random.PRNGKey(22), n)
    cfg = FitConfig(epochs=10, batch_size=1000, schedule="constant", clip_norm=None, progress=False)
    est = of.classifier_ratio(config=cfg)
    res = of.omnifold(
        jax.random.PRNGKey(23),
        gen=v["gen"],
        sim=v["sim"],
        data=v["data"],
        data_weights=v["data_weights"],
        pass_reco=v["pass_reco"],
        pass_gen=v["pass_gen"],
        n_iterations=3,
        step1=est,
        step2=est,
    )
    sel = v["pass_gen"]
    mean, std = of.weighted_moments(v["gen"][sel], res.push_weights[:, 0, sel])
    edges = np.linspace(-5, 5, 41)
    ref, _ = _ibu_with_fakes_subtracted(v, 3, edges)
    c = 0.5 * (edges[1:] + edges[:-1])
    rm = ref @ c / ref.sum(1)
    rs = np.sqrt(ref @ c**2 / ref.sum(1) - rm**2)
    # Tolerance: IBU and OmniFold see the same data, so only the classifiers' ratio error
    # separates them: ~1.3 sqrt(2/n) per iteration (test above), x ~1.1 for the
    # negatively weighted background and the fake subtraction (sum w^2 / (sum w)^2 of the
    # data weights ~1.3x that of unit weights): sd ~ 0.014 at n = 2e4; 3 sd = 0.042.
    # The 0.25 binning of IBU shifts the std by < 0.003 (Sheppard: h^2/24 / (2 s)).
    np.testing.assert_allclose(np.asarray(mean), rm, atol=0.042)
    np.testing.assert_allclose(np.asarray(std), rs, atol=0.042)
