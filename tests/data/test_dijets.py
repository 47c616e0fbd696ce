import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import dijets
from jaxgen.data.dijets import Regions

N_BKG = 200_000


@pytest.fixture(scope="module")
def events():
    return dijets.generate(jax.random.PRNGKey(0), N_BKG, n_signal=10_000)


def _binomial_tol(p, n, k=4.0):
    # k standard deviations of a binomial fraction estimated from n events.
    return k * math.sqrt(p * (1 - p) / n)


def test_background_mjj_spectrum_matches_section_10a(events):
    # Section 10a's calibration [V numeric]: P(SR) = 0.1215; P(3.1-3.3) = 0.107,
    # P(3.7-3.9) = 0.035, P(m > 5) = 0.026 (quoted to the last digit shown: +- half of it).
    assert dijets.background_fraction(3.3, 3.7) == pytest.approx(0.1215, abs=5e-5)
    for (lo, hi), quoted in [((3.1, 3.3), 0.107), ((3.7, 3.9), 0.035), ((5.0, 9.0), 0.026)]:
        assert dijets.background_fraction(lo, hi) == pytest.approx(quoted, abs=5e-4)
    m = np.asarray(events.mjj)[np.asarray(events.labels) == 0]
    for lo, hi in [(3.3, 3.7), (3.1, 3.3), (3.7, 3.9), (5.0, 9.0)]:
        p = dijets.background_fraction(lo, hi)
        frac = np.mean((m >= lo) & (m < hi))
        assert abs(frac - p) < _binomial_tol(p, m.size), (lo, hi, frac, p)
    assert m.min() >= dijets.MJJ_RANGE[0] and m.max() <= dijets.MJJ_RANGE[1]


def test_signal_mjj_and_features(events):
    sig = np.asarray(events.labels) == 1
    m = np.asarray(events.mjj)[sig]
    f = np.asarray(events.features)[sig]
    # Section 10a: ~77 % of the signal in the SR (a calibration target, 2 digits).
    p = dijets.signal_fraction(3.3, 3.7)
    assert p == pytest.approx(0.77, abs=0.01)
    assert abs(np.mean((m >= 3.3) & (m < 3.7)) - p) < _binomial_tol(p, m.size)
    # Delta m_J ~ 0.5 - 0.1 = 0.40 TeV (10a, 2 digits: +-0.005) plus 4 standard errors of
    # the median, 1.2533 * sd / sqrt(n).
    med = np.median(f[:, 1])
    assert abs(med - 0.40) < 0.005 + 4 * 1.2533 * f[:, 1].std() / math.sqrt(f.shape[0])
    # tau21 ~ Beta(4, 8): mean 1/3 exactly (moment-matched), 4 standard errors.
    for j in (2, 3):
        assert abs(f[:, j].mean() - 1 / 3) < 4 * f[:, j].std() / math.sqrt(f.shape[0])
    assert np.all(f[:, 1] >= 0)


def test_background_features_depend_on_mjj(events):
    bkg = np.asarray(events.labels) == 0
    m = np.asarray(events.mjj)[bkg]
    f = np.asarray(events.features)[bkg]
    # tau21 mean ~0.65 (10a, 2 digits): pooled over both jets within a +-0.005 rounding
    # band plus 4 standard errors; each jet within 0.01 (the heavier jet's is lower, as
    # tau21 falls with the jet mass).
    tau = f[:, 2:4]
    assert abs(tau.mean() - 0.65) < 0.005 + 4 * tau.std() / math.sqrt(tau.size)
    assert np.all(np.abs(tau.mean(0) - 0.65) < 0.01)
    assert tau[:, 0].mean() > tau[:, 1].mean()
    jets = np.concatenate([f[:, 0], f[:, 0] + f[:, 1]])
    mm = np.concatenate([m, m])
    sr = (mm >= 3.3) & (mm < 3.7)
    # 10a: per-jet median 0.06-0.08 TeV at the SR.
    assert 0.06 < np.median(jets[sr]) < 0.08
    # Median jet mass proportional to mjj^1 (mass_exponent = 1): the log-log slope between
    # two mjj bins; the median of each bin has a relative error ~1.25 * 0.7 / sqrt(n) <
    # 1 %, so the slope over a lever arm ln(4.25/3.1) = 0.32 is known to ~0.05: tol 0.2.
    lo, hi = (mm >= 3.0) & (mm < 3.2), (mm >= 4.0) & (mm < 4.5)
    slope = (np.log(np.median(jets[hi]) / np.median(jets[lo]))
             / np.log(np.median(mm[hi]) / np.median(mm[lo])))
    assert slope == pytest.approx(1.0, abs=0.2)
    # Delta R_jj grows with mjj (kinematics), as in the R&D data.
    assert f[hi[: m.size] | hi[m.size:], 4].mean() > f[lo[: m.size], 4].mean()


# Few distinct shapes: each (n_background, n_signal) pair compiles once (~3 s of CPU).
N_SMALL = 5000
N_SIG_SMALL = dijets.signal_count(N_SMALL, 0.1)


def test_pure_function_of_key_and_injection():
    k = jax.random.PRNGKey(3)
    a = dijets.generate(k, N_SMALL, n_signal=N_SIG_SMALL)
    b = dijets.generate(k, N_SMALL, n_signal=N_SIG_SMALL)
    c = dijets.generate(jax.random.PRNGKey(4), N_SMALL, n_signal=N_SIG_SMALL)
    np.testing.assert_array_equal(np.asarray(a.features), np.asarray(b.features))
    assert not np.array_equal(np.asarray(a.features), np.asarray(c.features))
    assert int(a.labels.sum()) == N_SIG_SMALL and a.features.shape == (N_SMALL + N_SIG_SMALL, 5)
    # Shuffled: the signal is not all at the end.
    assert int(a.labels[-N_SIG_SMALL:].sum()) < N_SIG_SMALL
    assert N_SIG_SMALL == round(0.1 * N_SMALL * dijets.background_fraction(3.3, 3.7)
                                / dijets.signal_fraction(3.3, 3.7))
    ev = dijets.generate(k, N_SMALL, s_over_b=0.1)
    np.testing.assert_array_equal(np.asarray(ev.features), np.asarray(a.features))


def test_shift_and_simulation():
    k = jax.random.PRNGKey(5)
    base = dijets.generate(k, N_SMALL, n_signal=N_SIG_SMALL)
    shifted = dijets.generate(k, N_SMALL, n_signal=N_SIG_SMALL, shift=dijets.STRESS_SHIFT)
    d = np.asarray(shifted.features - base.features)
    np.testing.assert_allclose(d[:, 0], 0.1 * np.asarray(base.mjj), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d[:, 1], 0.1 * np.asarray(base.mjj), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(d[:, 2:], 0.0)
    # Simulation: the same key gives the same underlying draws, so a pure tau21
    # distortion shifts every tau21 by exactly +0.03 (below the clip at 1), and the
    # default SIMULATION (mass scale 1.1) has heavier jets on the same mjj spectrum.
    data = dijets.generate(k, N_SMALL)
    tau_only = dijets.simulation(k, N_SMALL, distortion=dijets.Distortion(tau21_shift=0.03))
    t_data, t_sim = np.asarray(data.features[:, 2:4]), np.asarray(tau_only.features[:, 2:4])
    inner = t_data < 0.97
    np.testing.assert_allclose((t_sim - t_data)[inner], 0.03, atol=1e-5)
    sim = dijets.simulation(k, N_SMALL)
    np.testing.assert_array_equal(np.asarray(sim.mjj), np.asarray(data.mjj))
    assert float(jnp.median(sim.features[:, 0])) > float(jnp.median(data.features[:, 0]))
    assert int(sim.labels.sum()) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_background=-1), "n_background"),
        (dict(n_background=10, n_signal=-2), "n_signal"),
        (dict(n_background=10, n_signal=1, s_over_b=0.1), "not both"),
        (dict(n_background=10, s_over_b=-0.1), "s_over_b"),
        (dict(n_background=10, distortion=dijets.Distortion(mass_scale=0.0)), "distortion"),
        (dict(n_background=0), "must be > 0"),
    ],
)
def test_generate_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dijets.generate(jax.random.PRNGKey(0), **kwargs)  # raises before compiling


def test_regions_labels_and_bins():
    r = Regions()
    assert r.low_sideband == pytest.approx((3.1, 3.3)) and r.high_sideband == pytest.approx(
        (3.7, 3.9))
    m = jnp.array([3.0999, 3.1, 3.2999, 3.3, 3.6999, 3.7, 3.8999, 3.9])
    assert r.region_labels(m).tolist() == [0, 1, 1, 2, 2, 3, 3, 0]
    assert jax.jit(r.region_labels)(m).dtype == jnp.int32
    assert r.in_sr(m).tolist() == [False, False, False, True, True, False, False, False]
    assert int(r.in_sidebands(m).sum()) == 4
    # The CWoLa scan of 2104.02092 (section 3 [V]): SR = bins 9-12 -> [3371, 3661] GeV, low SB
    # [3169, 3371], high SB [3661, 3895] (edges quoted to the GeV).
    cw = Regions.from_bins(dijets.log_uniform_bins(2.8, 5.2, 30), 9)
    np.testing.assert_allclose(cw.sr, (3.371, 3.661), atol=5e-4)
    np.testing.assert_allclose(cw.low_sideband, (3.169, 3.371), atol=5e-4)
    np.testing.assert_allclose(cw.high_sideband, (3.661, 3.895), atol=5e-4)
    assert len(dijets.scan_regions(dijets.log_uniform_bins(2.8, 5.2, 30))) == 21
    ev = dijets.generate(jax.random.PRNGKey(0), N_SMALL)
    sel = dijets.select(ev, r.in_sr(ev.mjj))
    assert sel.features.shape[0] == sel.mjj.shape[0] and float(sel.mjj.min()) >= 3.3


def test_regions_reject_bad_input():
    with pytest.raises(ValueError, match="sr"):
        Regions(sr=(3.7, 3.3))
    with pytest.raises(ValueError, match="sideband_width"):
        Regions(sideband_width=-0.1)
    with pytest.raises(ValueError, match="outside the range of `mjj`"):
        Regions(sr=(6.0, 7.0)).check_covers(jnp.array([2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="NaN"):
        Regions().check_covers(jnp.array([2.0, jnp.nan, 4.0]))
    with pytest.raises(ValueError, match="first_sr_bin"):
        Regions.from_bins(dijets.log_uniform_bins(), 28)
    with pytest.raises(ValueError, match="features"):
        dijets.check_events(dijets.DijetEvents(jnp.ones(3), jnp.ones((3, 4)), jnp.ones(3)),
                            n_features=5)
