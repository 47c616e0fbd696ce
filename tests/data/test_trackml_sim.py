"""The fast TrackML simulation: helices, scattering, clusters, output consistency."""

import dataclasses
import math
import pathlib

import jax
import numpy as np
import pytest

from jaxgen.data import trackml
from jaxgen.data.trackml import simulate as sim

SAMPLES = pathlib.Path(__file__).parent / "trackml_samples"
# Few configs: each distinct config compiles the kernel once (~5-10 s on 2 cores). SMALL is
# also what the command-line test and the experiment's quick preset build.
SMALL = trackml.SimConfig(n_particles=400, n_noise=200)
EXACT = dataclasses.replace(SMALL, multiple_scattering=False, energy_loss=False)
SCATTER = dataclasses.replace(SMALL, energy_loss=False)


@pytest.fixture(scope="module")
def event():
    return trackml.simulate_event(jax.random.key(0), SMALL, event_id=5)


@pytest.fixture(scope="module")
def exact_event():
    return trackml.simulate_event(jax.random.key(0), EXACT, event_id=5)


@pytest.fixture(scope="module")
def detector():
    return trackml.read_detector()


def _particle_rows(ev):
    order = np.argsort(ev.particles.particle_id)
    hp = ev.truth.particle_id
    row = order[np.searchsorted(ev.particles.particle_id[order], hp)]
    return np.where(hp == 0, -1, row)


def test_event_is_consistent_and_pure(event, tmp_path):
    ev = event
    trackml.check_event(ev)
    n = len(ev.hits.hit_id)
    np.testing.assert_array_equal(ev.hits.hit_id, np.arange(1, n + 1))
    key = ev.hits.volume_id * 10**7 + ev.hits.layer_id * 10**5 + ev.hits.module_id
    assert (np.diff(key) >= 0).all()  # sorted by volume, layer, module like the challenge
    assert (ev.truth.particle_id == 0).sum() == SMALL.n_noise
    assert ev.truth.weight.sum() == pytest.approx(1.0, rel=1e-5)
    assert (ev.truth.weight[ev.truth.particle_id == 0] == 0).all()
    # nhits of every particle equals its truth hits; every hit has cells.
    row = _particle_rows(ev)
    counts = np.bincount(row[row >= 0], minlength=len(ev.particles.particle_id))
    np.testing.assert_array_equal(ev.particles.nhits, counts)
    assert np.isin(ev.hits.hit_id, ev.cells.hit_id).all()
    gen = trackml.decode_particle_id(ev.particles.particle_id)["generation"]
    assert (gen == 0).sum() == SMALL.n_particles - SMALL.n_secondaries
    assert len(np.unique(ev.particles.particle_id)) == SMALL.n_particles
    # A pure function of the key; a different key gives a different event.
    again = trackml.simulate_event(jax.random.key(0), SMALL, event_id=5)
    np.testing.assert_array_equal(again.hits.x, ev.hits.x)
    np.testing.assert_array_equal(again.cells.value, ev.cells.value)
    other = trackml.simulate_event(jax.random.key(1), SMALL)
    assert len(other.hits.x) != n or not np.array_equal(other.hits.x, ev.hits.x)
    # Written and read back exactly, in the challenge's files.
    back = trackml.read_event(trackml.write_event(tmp_path, ev))
    for part in ("hits", "cells", "particles", "truth"):
        for a, b in zip(getattr(ev, part), getattr(back, part), strict=True):
            np.testing.assert_array_equal(a, b)


def test_hits_lie_on_their_modules(event, detector):
    det = detector
    h, tr = event.hits, event.truth
    idx = trackml.module_index(det, h.volume_id, h.layer_id, h.module_id)
    true = trackml.global_to_local(det, idx, np.stack([tr.tx, tr.ty, tr.tz], 1).astype(float))
    meas = trackml.global_to_local(det, idx, np.stack([h.x, h.y, h.z], 1).astype(float))
    # float32 positions (up to 3 m): 1e-3 mm rounding tolerance.
    assert trackml.inside_module(det, idx, true, tolerance=1e-3).all()
    assert (np.abs(meas[:, 2]) < 1e-3).all()
    # The measurement is the cluster centroid: within one pitch (plus the 2e-3 mm rounding)
    # of the true point along each axis, unless the cluster is cut by the module edge, plus
    # the pixel charge noise: with relative noise s per cell, a centroid over N cells at
    # unit spacing moves by pitch * s * sqrt(sum (k - mean)^2) / N ~ pitch * s *
    # sqrt(N / 12) (1 sigma); 5 sigma for ~8,000 coordinates (two-sided 6e-7 each).
    row = np.searchsorted(h.hit_id, event.cells.hit_id)
    n_u = np.round(2 * det.max_hu / det.pitch_u).astype(int)[idx]
    n_v = np.round(2 * det.hv / det.pitch_v).astype(int)[idx]
    c = event.cells
    edge_cell = (c.ch0 == 0) | (c.ch1 == 0) | (c.ch0 == n_u[row] - 1) | (c.ch1 == n_v[row] - 1)
    inner = np.bincount(row, edge_cell, len(h.x)) == 0
    assert inner.mean() > 0.9
    noise = np.where(np.isin(h.volume_id, (7, 8, 9)), SMALL.value_fluctuation, 0.0)
    for axis, ch, pitch in ((0, c.ch0, det.pitch_u[idx]), (1, c.ch1, det.pitch_v[idx])):
        extent = np.zeros(len(h.x), int)
        np.maximum.at(extent, row, ch)
        low = np.full(len(h.x), 1 << 30)
        np.minimum.at(low, row, ch)
        n_cells = extent - low + 1
        tol = pitch * (1.0 + 5.0 * noise * np.sqrt(n_cells / 12.0)) + 2e-3
        assert (np.abs(meas[inner, axis] - true[inner, axis]) <= tol[inner]).all()


def _helix_errors(ev):
    """Distances of every particle hit to the exact helix of its particle (float64)."""
    row = _particle_rows(ev)
    m = row >= 0
    p = ev.particles
    r = row[m]
    vx, vy, vz = (np.asarray(a, float)[r] for a in (p.vx, p.vy, p.vz))
    px, py, pz = (np.asarray(a, float)[r] for a in (p.px, p.py, p.pz))
    q = p.q[r].astype(float)
    pt = np.hypot(px, py)
    kappa = -q * 2.0 * sim.C_LIGHT / pt
    t0 = np.stack([px, py], 1) / pt[:, None]
    n0 = np.stack([-t0[:, 1], t0[:, 0]], 1)
    centre = np.stack([vx, vy], 1) + n0 / kappa[:, None]
    h = np.stack([ev.truth.tx[m], ev.truth.ty[m]], 1).astype(float)
    d = h - centre
    radial = np.abs(np.hypot(d[:, 0], d[:, 1]) - 1.0 / np.abs(kappa))
    b = np.arctan2(kappa * (d * t0).sum(1), -kappa * (d * n0).sum(1))
    b = np.where((kappa > 0) & (b < 0), b + 2 * np.pi, b)
    b = np.where((kappa < 0) & (b > 0), b - 2 * np.pi, b)
    z_pred = vz + (b / kappa) * pz / pt
    return radial, np.abs(ev.truth.tz[m] - z_pred), pt, row[m]


def test_hits_lie_exactly_on_the_helix_without_scattering(exact_event):
    radial, dz, _, _ = _helix_errors(exact_event)
    assert len(radial) > 1000
    # float32 state: positions up to 3e3 mm carry 2e-4 mm per rounding and the angle
    # accumulates ~24 roundings of 6e-8 rad over <= 24 steps (1.5e-3 mm at 1 m): 5e-3 mm.
    assert radial.max() < 5e-3
    assert dz.max() < 5e-3


def test_infinite_momentum_leaves_a_straight_line():
    # kappa = q B c / pT: pT -> infinity is the same limit as B -> 0 (here 1e-9 T).
    cfg = dataclasses.replace(EXACT, b_field=1e-9)
    ev = trackml.simulate_event(jax.random.key(3), cfg)
    row = _particle_rows(ev)
    m = row >= 0
    p = ev.particles
    v = np.stack([p.vx, p.vy, p.vz], 1).astype(float)[row[m]]
    u = np.stack([p.px, p.py, p.pz], 1).astype(float)[row[m]]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    h = np.stack([ev.truth.tx, ev.truth.ty, ev.truth.tz], 1).astype(float)[m]
    d = h - v
    off_line = np.linalg.norm(d - (d * u).sum(1, keepdims=True) * u, axis=1)
    assert (d * u).sum(1).min() > 0  # forward along the momentum
    assert off_line.max() < 5e-3  # float32 rounding, as above


def test_scattering_stays_within_the_highland_scale(detector):
    # Same key with and without scattering: the particles and every other random draw
    # agree, so hit displacements come from scattering only. For p > 1 GeV in the barrel
    # the rphi displacement at hit k is Gaussian with variance
    # sum_{j<k} theta0_j^2 (rho_k - rho_j)^2 / sin^2(theta) (small-angle, thin scatterers),
    # theta0_j from the Highland formula with the module's path length.
    det = detector
    pulls = []
    events = [(trackml.simulate_event(jax.random.key(k), SCATTER),
               trackml.simulate_event(jax.random.key(k), EXACT)) for k in range(10, 16)]
    for ev, off in events:
        row = _particle_rows(ev)
        p = ev.particles
        pp = np.sqrt(p.px.astype(float) ** 2 + p.py ** 2 + p.pz ** 2)
        sin_t = np.hypot(p.px, p.py) / pp
        idx = trackml.module_index(det, ev.hits.volume_id, ev.hits.layer_id, ev.hits.module_id)
        idx_off = trackml.module_index(det, off.hits.volume_id, off.hits.layer_id,
                                       off.hits.module_id)
        np.testing.assert_array_equal(off.particles.particle_id, p.particle_id)
        key_on = row.astype(np.int64) * 10**6 + idx
        key_off = _particle_rows(off).astype(np.int64) * 10**6 + idx_off
        _, i_on, i_off = np.intersect1d(key_on, key_off, return_indices=True)
        sel = (row[i_on] >= 0) & np.isin(ev.hits.volume_id[i_on], [8, 13, 17])
        i_on, i_off = i_on[sel], i_off[sel]
        r = row[i_on]
        fast = (pp[r] > 1.0) & (np.abs(np.arctanh(p.pz[r] / pp[r])) < 1.0)
        i_on, i_off, r = i_on[fast], i_off[fast], r[fast]
        nrm = det.rotation[idx][:, :, 2]
        tp = np.stack([ev.truth.tpx, ev.truth.tpy, ev.truth.tpz], 1).astype(float)
        cos_a = np.abs((nrm * tp).sum(1)) / np.maximum(np.linalg.norm(tp, axis=1), 1e-12)
        x = det.thickness[idx] / np.maximum(cos_a, 1e-6) / sim.X0_SILICON
        rho = np.hypot(ev.truth.tx, ev.truth.ty).astype(float)
        for particle in np.unique(r):
            mine = np.flatnonzero(row == particle)
            mine = mine[np.argsort(rho[mine])]
            beta = pp[particle] / np.hypot(pp[particle], 0.13957)
            theta0 = 13.6e-3 / (beta * pp[particle]) * np.sqrt(x[mine]) * (
                1 + 0.038 * np.log(x[mine] / beta**2))
            for k_on, k_off in zip(i_on[r == particle], i_off[r == particle], strict=True):
                k = np.flatnonzero(mine == k_on)[0]
                var = np.sum(theta0[:k] ** 2 * (rho[k_on] - rho[mine[:k]]) ** 2) \
                    / sin_t[particle] ** 2
                if var <= 0:
                    continue
                phi = np.arctan2(ev.truth.ty[k_on], ev.truth.tx[k_on])
                dx = float(ev.truth.tx[k_on]) - float(off.truth.tx[k_off])
                dy = float(ev.truth.ty[k_on]) - float(off.truth.ty[k_off])
                pulls.append((-dx * np.sin(phi) + dy * np.cos(phi)) / math.sqrt(var))
    pulls = np.array(pulls)
    assert len(pulls) > 200
    # A unit Gaussian: RMS 1 within 5 standard errors (1/sqrt(2N) ~ 0.04) widened to
    # [0.75, 1.25] for the approximations (pion mass, thin scatterers, layer-summed
    # material); no pull beyond 6 (N < 1e4 draws).
    rms = float(np.sqrt(np.mean(pulls**2)))
    assert 0.75 < rms < 1.25, rms
    assert np.abs(pulls).max() < 6.0


def test_cluster_length_along_the_beam_grows_with_cot_theta(detector):
    # In the pixel barrel v is along z: a straight path through thickness t crosses on
    # average t |dv/dw| / pitch_v + 1 rows (a segment of length l cells at a uniformly
    # random offset meets l + 1 cells on average). Checked on the simulation and on the
    # real subset, in bins of |cot theta| (|dv/dw|).
    det = detector
    sims = [trackml.simulate_event(jax.random.key(k), SMALL) for k in range(20, 24)]
    ev_real = trackml.read_event(SAMPLES / "event000000001")
    for ev in (*sims, ev_real):
        h, c, tr = ev.hits, ev.cells, ev.truth
        m = (h.volume_id == 8) & (tr.particle_id != 0)
        idx = trackml.module_index(det, h.volume_id, h.layer_id, h.module_id)
        tp = np.stack([tr.tpx, tr.tpy, tr.tpz], 1).astype(float)
        loc = np.einsum("nji,nj->ni", det.rotation[idx], tp)
        cot = np.abs(loc[:, 1]) / np.maximum(np.abs(loc[:, 2]), 1e-12)  # noise has tp = 0
        pred = det.thickness[idx] * cot / det.pitch_v[idx] + 1
        row = np.searchsorted(h.hit_id, c.hit_id)
        lo = np.full(len(h.x), 1 << 30)
        hi = np.zeros(len(h.x), int)
        np.minimum.at(lo, row, c.ch1)
        np.maximum.at(hi, row, c.ch1)
        n1 = hi - lo + 1
        tv = trackml.global_to_local(det, idx, np.stack([tr.tx, tr.ty, tr.tz], 1).astype(float))
        away = np.abs(tv[:, 1]) + 0.5 * det.thickness[idx] * cot < det.hv[idx] - 0.1
        m &= away & (pred < 30)
        means = []
        for a, b in ((0, 0.5), (0.5, 1.5), (1.5, 4), (4, 10)):
            s = m & (cot >= a) & (cot < b)
            if s.sum() < 20:
                continue
            diff = n1[s] - pred[s]
            # The count of crossed rows differs from l + 1 by a bounded +-1 fluctuation:
            # its mean is 0 within 4 standard errors (plus 0.05 for the real file's
            # float32-rounded momenta).
            se = diff.std(ddof=1) / math.sqrt(s.sum())
            assert abs(diff.mean()) < 4 * se + 0.05, (a, b, diff.mean(), se)
            means.append(n1[s].mean())
        assert len(means) >= 3 and np.all(np.diff(means) > 0)


def test_command_line_writes_events(tmp_path, capsys):
    assert sim.main(["--events", "2", "--out", str(tmp_path), "--particles", "400",
                     "--noise", "200", "--seed", "4"]) == 0
    events = list(trackml.read_events(tmp_path))
    assert [e.event_id for e in events] == [1000, 1001]
    assert all(len(e.particles.particle_id) == 400 for e in events)
    assert "event000001001" in capsys.readouterr().out


BAD_CONFIGS = {
    "n_particles": ({"n_particles": 0}, "`n_particles` must be a positive integer"),
    "n_noise": ({"n_noise": -1}, "`n_noise` must be a non-negative integer"),
    "b_field": ({"b_field": 0.0}, "`b_field` must be finite and > 0"),
    "efficiency": ({"hit_efficiency": 1.5}, r"`hit_efficiency` must be in \[0, 1\]"),
    "secondaries": ({"secondary_fraction": 1.0}, "leaves no primary"),
    "too many": ({"n_particles": 70000}, "16-bit"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_rejected(case):
    kwargs, match = BAD_CONFIGS[case]
    with pytest.raises(ValueError, match=match):
        trackml.SimConfig(**kwargs)


def test_capacity_overflow_is_an_error():
    cfg = dataclasses.replace(SMALL, hit_capacity=10, long_cluster_capacity=300)
    with pytest.raises(ValueError, match="hit_capacity"):
        sim.check_capacity({"n_hits": 11, "n_long": 0}, cfg)
    with pytest.raises(ValueError, match="long_cluster_capacity"):
        sim.check_capacity({"n_hits": 10, "n_long": 301}, cfg)
    sim.check_capacity({"n_hits": 10, "n_long": 300}, cfg)
