"""Tests of the SUPA-like shower simulator (arXiv:2202.05012) against a plain reference.

Statistical tolerances: every comparison of the vectorised simulator with the reference
(``supa_reference.py``, independent code and RNG) is a two-sample z-test on per-shower
quantities (independent across showers, so the CLT applies):
``|m1 - m2| <= 5 * sqrt(s1^2 / n1 + s2^2 / n2)``. With about 40 comparisons, the chance
of a false failure is below 40 * 5.7e-7 ~ 2e-5; a wrong rule (e.g. swapped stop/split
thresholds, a wrong readout range, E1/E2 swapped) moves these means by tens of sigma.
"""

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import showers as S

_spec = importlib.util.spec_from_file_location(
    "supa_reference", pathlib.Path(__file__).with_name("supa_reference.py")
)
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)

N_JAX = 8192  # also the experiment's quick size: the compiled simulator is shared
N_REF = 1500
N_SMALL = 256
Z = 5.0

# A non-default configuration: exact orientation, tilted and shifted primary, a uniform
# spectrum, 20 steps, other angles, and readout gaps (layers 9 and 18 are not read out).
CONFIG2 = S.ShowerConfig(
    energy_spectrum="uniform",
    energy_range=(20.0, 80.0),
    entry_position=(1.0, -2.0),
    incidence=(0.3, 1.0),
    n_steps=20,
    theta_range=(0.1, 0.3),
    asymmetry=0.2,
    readout_layers=((5, 8), (10, 17), (19, 27)),
    orientation="exact",
)


def features_from_clouds(clouds, n_layers):
    """Per shower and layer: count, energy, E-weighted centroid x, y and mean radius."""
    n = len(clouds)
    out = np.full((5, n, n_layers), np.nan)
    for i, c in enumerate(clouds):
        for k in range(n_layers):
            pts = np.asarray(c[k], float).reshape(-1, 3)
            out[0, i, k] = len(pts)
            out[1, i, k] = pts[:, 2].sum()
            if len(pts):
                w = pts[:, 2] / pts[:, 2].sum()
                out[2, i, k] = w @ pts[:, 0]
                out[3, i, k] = w @ pts[:, 1]
                out[4, i, k] = w @ np.hypot(pts[:, 0], pts[:, 1])
    return out


def features_from_showers(s):
    pts = np.asarray(s.points, float)
    counts = np.asarray(s.counts)
    clouds = [[pts[i, k, : counts[i, k]] for k in range(pts.shape[1])]
              for i in range(pts.shape[0])]
    return features_from_clouds(clouds, pts.shape[1])


def assert_same_means(a, b, what):
    """Two-sample z-test on the finite entries of a and b (see the module docstring)."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    diff = abs(a.mean() - b.mean())
    assert diff <= Z * se + 1e-12, f"{what}: {a.mean():.5g} vs {b.mean():.5g} (se {se:.3g})"


def assert_same_fraction(a, b, what):
    p = (a.sum() + b.sum()) / (a.size + b.size)
    se = math.sqrt(p * (1 - p) * (1 / a.size + 1 / b.size))
    diff = abs(a.mean() - b.mean())
    assert diff <= Z * se + 1e-12, f"{what}: {a.mean():.4g} vs {b.mean():.4g} (se {se:.3g})"


def assert_same_showers(a, b, position_atol=0.0):
    """Equal showers; point clouds compared after padding to a common width.

    ``position_atol``: tolerance on x and y for showers from different compiled code
    (XLA may contract a multiply-add into one rounding in one and not the other).
    """
    pa, pb = np.asarray(a.points), np.asarray(b.points)
    width = max(pa.shape[2], pb.shape[2])
    pad = [(0, 0), (0, 0), (0, 0), (0, 0)]
    pa = np.pad(pa, pad[:2] + [(0, width - pa.shape[2])] + pad[3:])
    pb = np.pad(pb, pad[:2] + [(0, width - pb.shape[2])] + pad[3:])
    np.testing.assert_array_equal(pa[..., 2], pb[..., 2])
    np.testing.assert_allclose(pa[..., :2], pb[..., :2], rtol=0, atol=position_atol)
    for f in ("counts", "energy", "escaped", "unread"):
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)))


def head(s, start, stop):
    return S.Showers(*(np.asarray(v)[start:stop] for v in s))


@pytest.fixture(scope="module")
def default_showers():
    return S.simulate(jax.random.key(1), N_JAX)


@pytest.fixture(scope="module")
def config2_showers():
    return S.simulate(jax.random.key(2), N_SMALL * 8, CONFIG2)


@pytest.mark.parametrize("which", ["default", "config2"])
def test_statistics_agree_with_reference(which, default_showers, config2_showers):
    if which == "default":
        ours, cfg, n_ref = default_showers, S.ShowerConfig(), N_REF
    else:
        ours, cfg, n_ref = config2_showers, CONFIG2, 800
    ref = R.simulate(123, n_ref, cfg)
    fa = features_from_showers(ours)
    fb = features_from_clouds(ref["clouds"], cfg.n_layers)
    names = ["points", "energy", "centroid x", "centroid y", "mean radius"]
    for k in range(cfg.n_layers):
        assert_same_fraction(fa[0, :, k] == 0, fb[0, :, k] == 0, f"P(layer {k} empty)")
        for j, name in enumerate(names):
            if k == 2 and j >= 2 and which == "config2":
                continue  # layer 2 is almost always empty here: too few showers to test
            assert_same_means(fa[j, :, k], fb[j, :, k], f"layer {k} {name}")
    assert_same_means(np.asarray(ours.energy), ref["energy"], "E0")
    assert_same_fraction(np.asarray(ours.escaped) > 0, ref["escaped"] > 0, "escape")


def test_counts_match_branching_process_mean(default_showers):
    # Expected points per layer follow from the analytic mean particle counts.
    c = np.asarray(default_showers.counts, float)
    mean = S.mean_points(S.ShowerConfig())
    se = c.std(0, ddof=1) / math.sqrt(c.shape[0])
    np.testing.assert_array_less(np.abs(c.mean(0) - mean), Z * se)


@pytest.mark.parametrize("orientation", ["reference", "exact"])
def test_split_kinematics(orientation):
    rng = np.random.default_rng(0)
    m = 1000
    x, y, px, py = (rng.normal(0, 3, m) for _ in range(4))
    e = rng.uniform(0.1, 65, m)
    theta = rng.uniform(math.pi / 32, math.pi / 16, m)
    delta = rng.uniform(-0.25, 0.25, m) * theta
    phi = rng.uniform(0, 2 * math.pi, m)
    args = [jnp.asarray(v, jnp.float32) for v in (x, y, px, py, e, theta, delta, phi)]
    x1, y1, e1, x2, y2, e2 = map(np.asarray, S.split_kinematics(*args, 2.0, orientation))
    # Energy conservation at every split (float32 rounding of one product and one sum).
    np.testing.assert_allclose(e1 + e2, e, rtol=2e-6)
    np.testing.assert_allclose(e1 / e, (theta / 2 + delta) / theta, rtol=1e-5)
    # Daughters' directions have the sampled opening angle between them.
    d1 = np.stack([x1 - x, y1 - y, np.full(m, 2.0)], -1)
    d2 = np.stack([x2 - x, y2 - y, np.full(m, 2.0)], -1)
    v = np.stack([x - px, y - py, np.full(m, 2.0)], -1)

    def angle(a, b):
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        return np.arccos(np.clip(cos, -1, 1))

    # float32 positions of size ~10 with steps ~0.1: angles good to ~1e-4 rad.
    np.testing.assert_allclose(angle(d1, d2), theta, atol=2e-4)
    if orientation == "exact":
        np.testing.assert_allclose(angle(d1, v), theta / 2 - delta, atol=2e-4)
        np.testing.assert_allclose(angle(d2, v), theta / 2 + delta, atol=2e-4)
    # Same numbers as the plain reference implementation (float64).
    for i in range(0, m, 97):
        (rx1, ry1, re1), (rx2, ry2, re2) = R.split(x[i], y[i], px[i], py[i], e[i], theta[i],
                                                   delta[i], phi[i], 2.0, orientation)
        np.testing.assert_allclose([x1[i], y1[i], x2[i], y2[i]], [rx1, ry1, rx2, ry2],
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose([e1[i], e2[i]], [re1, re2], rtol=1e-5)


@pytest.mark.parametrize("which", ["default", "config2"])
def test_energy_conservation(which, default_showers, config2_showers):
    s = default_showers if which == "default" else config2_showers
    total = (np.asarray(s.layer_energy, np.float64).sum(-1) + np.asarray(s.escaped)
             + np.asarray(s.unread))
    # float32 sums of <= ~300 terms: relative error well below 1e-5.
    np.testing.assert_allclose(total, np.asarray(s.energy), rtol=1e-5)
    if which == "config2":
        assert np.asarray(s.unread).max() > 0  # the readout gaps catch some energy
        e = np.asarray(s.energy)
        assert e.min() >= 20.0 and e.max() <= 80.0 and e.std() > 10.0
    np.testing.assert_array_equal(np.asarray(s.mask).sum(-1), np.asarray(s.counts))


def test_grids_sum_to_readout_energy(default_showers):
    s = default_showers
    images, overflow = S.to_grids(s)
    assert [im.shape[1:] for im in images] == [(3, 96), (12, 12), (12, 6)]
    sums = np.stack([np.asarray(im).sum((1, 2)) for im in images], -1) + np.asarray(overflow)
    np.testing.assert_allclose(sums, 1000 * np.asarray(s.layer_energy), rtol=1e-4, atol=1e-3)
    assert np.asarray(overflow).sum() > 0  # some points leave the grids
    pts, counts = np.asarray(s.points), np.asarray(s.counts)
    edges = [(np.linspace(-5, 5, 4), np.linspace(-5, 5, 97)),
             (np.linspace(-10, 10, 13), np.linspace(-10, 10, 13)),
             (np.linspace(-15, 15, 13), np.linspace(-15, 15, 7))]
    for i in range(0, 200, 7):
        for k in range(3):
            p = pts[i, k, : counts[i, k]].astype(np.float64)
            h, _, _ = np.histogram2d(p[:, 0], p[:, 1], bins=edges[k], weights=p[:, 2])
            np.testing.assert_allclose(np.asarray(images[k][i]), 1000 * h, rtol=1e-5,
                                       atol=1e-3)


def test_deterministic_and_chunk_invariant(default_showers):
    key = jax.random.key(1)
    a = S.simulate(key, N_SMALL)
    b = S.simulate(key, N_SMALL)
    c = S.simulate(key, N_SMALL, first_index=N_SMALL)
    assert_same_showers(a, b)
    assert_same_showers(a, head(default_showers, 0, N_SMALL))
    assert_same_showers(c, head(default_showers, N_SMALL, 2 * N_SMALL))
    # Internal chunking (fixed chunks, the last one cut) gives the same showers.
    e = S.simulate(key, N_SMALL + 10, chunk_size=N_SMALL // 2)
    assert_same_showers(e, head(default_showers, 0, N_SMALL + 10))
    np.testing.assert_array_equal(np.asarray(e.mask).sum(-1), np.asarray(e.counts))
    d = S.simulate(jax.random.key(5), N_SMALL)
    assert not np.array_equal(np.asarray(d.counts), np.asarray(a.counts))


def test_chunks_inside_one_call(default_showers):
    # Chunks of 100 inside one compiled call (the last one padded: its extra showers are
    # simulated but not written out) give the showers of one unchunked simulation.
    cfg = S.ShowerConfig()
    caps = S.pool_capacities(cfg, 100)
    raw, e0 = S._simulate._run(jax.random.key(1), 0, None, n=N_SMALL, config=cfg, caps=caps,
                               max_points=256, chunk=100)
    assert not np.asarray(raw.pool_overflow).any()
    s = S._simulate._finish(raw, e0)
    assert_same_showers(s, head(default_showers, 0, N_SMALL))


def test_capacity_overflow_is_detected_and_resimulated(default_showers):
    # Half-size particle pools and max_points=16 overflow for many showers; they must be
    # flagged, and re-simulated to exactly the unbounded result (the default run).
    key = jax.random.key(1)
    cfg = S.ShowerConfig()
    caps = S._simulate._scaled(S.pool_capacities(cfg, N_SMALL), 0.5, N_SMALL)
    raw, _ = S._simulate._run(key, 0, None, n=N_SMALL, config=cfg, caps=caps, max_points=16)
    assert np.asarray(raw.pool_overflow).sum() > 10
    assert (np.asarray(raw.counts) > 16).sum() > 10
    s = S.simulate(key, N_SMALL, pool_scale=0.5, max_points=16)
    assert s.points.shape[2] >= np.asarray(s.counts).max()
    assert_same_showers(s, head(default_showers, 0, N_SMALL))


@pytest.mark.parametrize(("stages", "shrink"), [(8, None), (8, "both"), (1, "particles"),
                                                (1, "ends")])
def test_generation_stages_and_list_overflows(stages, shrink, default_showers):
    # The staged generations (large batches: loops and single generations with their own
    # list sizes) give the showers of the one-stage plan (small batches). With a list too
    # small, a suffix of the showers is flagged and every other shower is still exact.
    # Between the two code paths, positions may differ by float32 rounding (XLA contracts
    # a multiply-add into one FMA in one path and not the other): each of the <= 4
    # roundings per generation on a particle's position chain (x + s dx, x + r scale)
    # moves it by at most one unit roundoff (2**-24) of the largest coordinate, over
    # <= 24 generations: |dx| <= 96 * 2**-24 * max|x|.
    M = S._simulate
    cfg = S.ShowerConfig()
    caps = S.pool_capacities(cfg, N_SMALL)
    half = M._scaled(caps, 0.5, N_SMALL)
    if shrink == "both":
        caps = half
    elif shrink is not None:
        caps = caps._replace(**{shrink: getattr(half, shrink)})
    if stages > 1:
        plan = S._generations._stage_plan(caps, stages)
        assert [p[0] for p in plan[1:]] == [p[1] for p in plan[:-1]]
        assert plan[0][0] == 0 and plan[-1][1] == cfg.n_steps and len(plan) <= stages
        assert {p[1] - p[0] == 1 for p in plan} == {True, False}  # both kinds of stage
    raw, e0 = M._run(jax.random.key(1), 0, None, n=N_SMALL, config=cfg, caps=caps,
                     max_points=256, stages=stages)
    bad = np.asarray(raw.pool_overflow)
    if shrink is None:
        assert not bad.any()
    else:
        assert 10 < bad.sum() < N_SMALL - 10
        assert not bad[: np.argmax(bad)].any() and bad[np.argmax(bad):].all()
    good = ~bad
    ours = S.Showers(*(np.asarray(v)[good] for v in M._finish(raw, e0)))
    ref = S.Showers(*(np.asarray(v)[:N_SMALL][good] for v in default_showers))
    bound = 96 * 2.0**-24 * np.abs(np.asarray(ref.points)[..., :2]).max()
    assert_same_showers(ours, ref, position_atol=bound if stages > 1 else 0.0)


def _step_by_step_outcomes(cfg, born):
    """P(event at layer e, kind) for a particle born at ``born``: ``(stop, split)`` arrays
    over layers and the probability of passing every layer, by the layer-by-layer rule."""
    p_stop, p_split = cfg.probabilities()
    stop, split = np.zeros(cfg.n_steps), np.zeros(cfg.n_steps)
    alive = 1.0
    for e in range(born, cfg.n_steps):
        stop[e], split[e] = alive * p_stop[e], alive * p_split[e]
        alive *= 1.0 - p_stop[e] - p_split[e]
    return stop, split, alive


@pytest.mark.parametrize("stop_scale", [27.0, 16.0])  # 16: certain stops from layer 16 on
def test_one_draw_per_particle_follows_the_layer_by_layer_process(stop_scale):
    # Each particle's event layer and kind come from one uniform (`_event`). Per birth
    # layer, every outcome's count is Binomial(n, p) under the step-by-step rule:
    # |count - n p| <= 5 sqrt(n p (1 - p)) + 1 (about 200 cells: false alarm ~1e-4).
    M = S._generations
    cfg = S.ShowerConfig(stop_scale=stop_scale)
    births, n = (0, 5, 12, 20), 50_000
    rng = np.random.default_rng(7)
    m = n * len(births)
    born = np.repeat(np.asarray(births, np.int32), n)
    zeros = jnp.zeros((m,), jnp.float32)
    k0, k1 = (jnp.asarray(rng.integers(0, 2**32, m, dtype=np.uint32)) for _ in range(2))
    pool = M._Pool(zeros, zeros, zeros, zeros, zeros + 1.0, jnp.asarray(born),
                   jnp.arange(1, m + 1, dtype=jnp.uint32), k0, k1, jnp.int32(m))
    keep = S._kernels._materializer
    layer, split, _ = jax.jit(lambda p: M._event(p, p.tag, cfg, 0, keep(p.n >= 0)))(pool)
    layer, split = np.asarray(layer).reshape(len(births), n), np.asarray(split).reshape(
        len(births), n)
    for i, t in enumerate(births):
        stop_p, split_p, pass_p = _step_by_step_outcomes(cfg, t)
        cells = [(layer[i] == cfg.n_steps, pass_p)]
        for e in range(cfg.n_steps):
            cells.append(((layer[i] == e) & ~split[i], stop_p[e]))
            cells.append(((layer[i] == e) & split[i], split_p[e]))
        assert sum(p for _, p in cells) == pytest.approx(1.0)
        for hit, p in cells:
            assert abs(hit.sum() - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1, (t, p)


def test_generation_moments_match_a_monte_carlo():
    # Particles per generation of the split tree, and ends (particles without children),
    # from an independent layer-by-layer numpy Monte Carlo of N showers: means agree
    # within 5 standard errors, variances within 5 standard errors of the sample variance
    # (sqrt((m4 - s^4) / N)), in the generations with mean >= 0.05 (>= 1000 particles in
    # the sample; in the rarer tail the sample variance is far from normal).
    cfg = S.ShowerConfig()
    mean, var, end_mean, end_var = S._config._generation_stats(cfg)
    np.testing.assert_allclose(S.generation_moments(cfg), (mean, var))
    p_stop, p_split = cfg.probabilities()
    rng = np.random.default_rng(3)
    n_showers, t_max = 20_000, cfg.n_steps
    counts = np.zeros((2, n_showers, t_max))
    shower, born = np.arange(n_showers), np.zeros(n_showers, np.int64)
    for g in range(t_max):
        np.add.at(counts[0, :, g], shower, 1)
        event = np.full(shower.size, t_max)
        splits = np.zeros(shower.size, bool)
        for k in range(t_max):
            live = (born <= k) & (event == t_max)
            u = rng.random(shower.size)
            event[live & (u < p_stop[k] + p_split[k])] = k
            splits |= live & (u >= p_stop[k]) & (u < p_stop[k] + p_split[k])
        kids = splits & (event < t_max - 1)
        np.add.at(counts[1, :, g], shower[~kids], 1)
        shower, born = np.repeat(shower[kids], 2), np.repeat(event[kids] + 1, 2)
    assert shower.size == 0
    for c, mu, v in ((counts[0], mean, var), (counts[1], end_mean, end_var)):
        g = mu >= 0.05
        assert g.sum() >= 15
        c, mu, v = c[:, g], mu[g], v[g]
        m, s2 = c.mean(0), c.var(0, ddof=1)
        m4 = ((c - m) ** 4).mean(0)
        assert np.all(np.abs(m - mu) <= 5 * np.sqrt(s2 / n_showers) + 1e-9)
        assert np.all(np.abs(s2 - v) <= 5 * np.sqrt(np.maximum(m4 - s2**2, 0) / n_showers)
                      + 1e-9)


def test_hash_is_jax_threefry():
    # The simulator's vectorised threefry is bit-identical to jax.random's primitive, so
    # the draws of every particle are those of the documented counter scheme.
    import jax.extend.random as jrandom

    from jaxgen.data.showers import _kernels as M

    rng = np.random.default_rng(0)
    k0, k1, c0, c1 = (jnp.asarray(rng.integers(0, 2**32, 4096, dtype=np.uint32))
                      for _ in range(4))
    ours = M._threefry2x32(k0, k1, c0, c1)
    ref = jrandom.threefry2x32_p.bind(k0, k1, c0, c1)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_polynomial_trigonometry():
    from jaxgen.data.showers import _kernels as M

    eps = 2.0**-24  # float32 unit roundoff
    u = jnp.asarray(np.random.default_rng(1).random(100_000), jnp.float32)
    sin, cos = jax.jit(M._sincos_turns)(u)
    angle = 2 * np.pi * np.asarray(u, np.float64)
    # Truncation < 2e-9; the reduction u - q/4 is exact, then a handful of roundings of
    # values of size <= 1: |error| <= 8 eps.
    np.testing.assert_allclose(np.asarray(sin), np.sin(angle), rtol=0, atol=8 * eps)
    np.testing.assert_allclose(np.asarray(cos), np.cos(angle), rtol=0, atol=8 * eps)
    t = np.linspace(-1.5, 1.5, 30_001).astype(np.float32)
    tan = np.asarray(jax.jit(M._tan)(jnp.asarray(t)), np.float64)
    t64 = t.astype(np.float64)
    exact = np.tan(t64)
    # Rounding t / (2 pi) moves the angle by <= 2 eps |t|, i.e. tan by 2 eps |t| (1 + tan^2);
    # plus a few roundings of the result: 8 eps (|tan| + |t| (1 + tan^2)).
    bound = 8 * eps * (np.abs(exact) + np.abs(t64) * (1 + exact**2))
    assert np.all(np.abs(tan - exact) <= bound + 1e-30)


def test_blocked_cumsum_exact():
    from jaxgen.data.showers import _kernels as M

    rng = np.random.default_rng(2)
    for shape in [(257,), (3, 70_000)]:  # a partial block; several rows, many blocks
        x = rng.integers(0, 3, shape).astype(np.int32)
        got = jax.jit(M._cumsum)(jnp.asarray(x))
        np.testing.assert_array_equal(np.asarray(got), np.cumsum(x, -1))


def test_hdf5_round_trip_and_streaming(tmp_path, default_showers):
    key = jax.random.key(1)
    s = S.simulate(key, N_SMALL)
    info = S.write_hdf5(tmp_path / "a.h5", s, drop_empty=False)
    assert info == {"n_simulated": N_SMALL, "n_kept": N_SMALL, "dropped_fraction": 0.0}
    back, grids, attrs = S.read_hdf5(tmp_path / "a.h5")
    for f in S.Showers._fields:
        np.testing.assert_array_equal(np.asarray(getattr(back, f)), np.asarray(getattr(s, f)))
    images, overflow = S.to_grids(s)
    for k in range(3):
        np.testing.assert_array_equal(grids[f"layer_{k}"], np.asarray(images[k]))
    np.testing.assert_array_equal(grids["overflow"], np.asarray(overflow))
    assert grids["energy"].shape == (N_SMALL, 1)
    assert attrs["config"] == S.ShowerConfig()
    # Streaming in chunks with the reference's dropping equals the kept showers.
    info = S.generate_hdf5(tmp_path / "b.h5", key, N_SMALL, chunk_size=N_SMALL // 2)
    kept = np.asarray(s.kept)
    assert info["n_kept"] == kept.sum()
    assert info["dropped_fraction"] == pytest.approx(1 - kept.mean())
    back, _, _ = S.read_hdf5(tmp_path / "b.h5")
    assert_same_showers(back, S.Showers(*(np.asarray(v)[kept] for v in s)))


def test_energies_override_and_spectrum():
    e = np.linspace(1.0, 100.0, N_SMALL)
    s = S.simulate(jax.random.key(3), N_SMALL, energies=e)
    np.testing.assert_allclose(np.asarray(s.energy), e, rtol=1e-6)
    total = np.asarray(s.layer_energy).sum(-1) + np.asarray(s.escaped)
    np.testing.assert_allclose(total, e, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"energy": -1.0}, "ShowerConfig.energy"),
        ({"energy": float("nan")}, "ShowerConfig.energy"),
        ({"energy_spectrum": "flat"}, "ShowerConfig.energy_spectrum"),
        ({"energy_range": (5.0, 1.0)}, "ShowerConfig.energy_range"),
        ({"incidence": (2.0, 0.0)}, "ShowerConfig.incidence"),
        ({"n_steps": 0}, "ShowerConfig.n_steps"),
        ({"n_steps": 40}, "ShowerConfig.n_steps"),
        ({"dz": 0.0}, "ShowerConfig.dz"),
        ({"split_prob_early": 1.5}, "ShowerConfig.split_prob_early"),
        ({"theta_range": (0.2, 0.1)}, "ShowerConfig.theta_range"),
        ({"asymmetry": 0.5}, "ShowerConfig.asymmetry"),
        ({"readout_layers": ((5, 8), (7, 9), (18, 27))}, "ShowerConfig.readout_layers"),
        ({"grid_bins": ((3, 96), (12, 12))}, "ShowerConfig.grid_bins"),
        ({"grid_extent": (5.0, -1.0, 15.0)}, "ShowerConfig.grid_extent"),
        ({"orientation": "other"}, "ShowerConfig.orientation"),
    ],
)
def test_bad_config_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.ShowerConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "`n`"),
        ({"energies": np.ones(3)}, "`energies`"),
        ({"energies": -np.ones(4)}, "`energies`"),
        ({"max_points": 0}, "`max_points`"),
        ({"first_index": -1}, "`first_index`"),
        ({"margin": -1.0}, "`margin`"),
        ({"pool_scale": 0.0}, "`pool_scale`"),
        ({"chunk_size": 0}, "`chunk_size`"),
        ({"config": "default"}, "`config`"),
    ],
)
def test_bad_simulate_arguments_rejected(kwargs, match):
    args = {"n": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        S.simulate(jax.random.key(0), **args)


@pytest.mark.parametrize("key", [0, jnp.zeros(3, jnp.uint32), jax.random.split(jax.random.key(0))])
def test_bad_key_rejected(key):
    with pytest.raises(ValueError, match="`key`"):
        S.simulate(key, 4)


def test_bad_grids_input_rejected(default_showers):
    with pytest.raises(ValueError, match="showers.points"):
        S.to_grids(default_showers, S.ShowerConfig(readout_layers=((5, 8), (9, 27)),
                                                   grid_bins=((3, 96), (12, 12)),
                                                   grid_extent=(5.0, 10.0)))


def test_experiment_quick_smoke(tmp_path):
    from experiments import make_config
    from experiments import showers as exp

    # (No throughput timing here: it compiles the large-batch code; the experiment's quick
    # run in experiments.reproduce does it.)
    metrics = exp.run(make_config(exp.Config, exp.QUICK, throughput_showers=0), tmp_path)
    for key in ("p_empty", "points_mean", "points_std", "points_mean_kept", "energy_mean",
                "energy_std", "frac_full_energy", "kept_fraction", "showers_per_s", "checks"):
        assert key in metrics
    assert (tmp_path / "mean_images.png").exists()
