"""The real TrackML geometry: every real hit lies on the module it names."""

import pathlib

import numpy as np
import pytest

from jaxgen.data import trackml

SAMPLES = pathlib.Path(__file__).parent / "trackml_samples"


@pytest.fixture(scope="module")
def geometry():
    det = trackml.read_detector()
    return det, trackml.build_layers(det)


def test_detector_table(geometry):
    det, layers = geometry
    assert len(det.volume_id) == 18728
    assert sorted(set(det.volume_id.tolist())) == [7, 8, 9, 12, 13, 14, 16, 17, 18]
    assert len(layers.position) == 48
    # Rotations are orthonormal.
    eye = np.einsum("mji,mjk->mik", det.rotation, det.rotation)
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), eye.shape), atol=1e-5)


@pytest.mark.parametrize("event", ["event000000001", "event000001001"])
def test_every_real_hit_lies_on_its_module(geometry, event):
    det, layers = geometry
    hits = trackml.read_event(SAMPLES / event, parts=("hits",)).hits
    idx = trackml.module_index(det, hits.volume_id, hits.layer_id, hits.module_id)
    xyz = np.stack([hits.x, hits.y, hits.z], 1).astype(np.float64)
    uvw = trackml.global_to_local(det, idx, xyz)
    # Distance to the module plane below the module thickness (in fact below t / 2).
    assert (np.abs(uvw[:, 2]) < det.thickness[idx]).all()
    assert (np.abs(uvw[:, 2]) < 0.5 * det.thickness[idx]).all()
    # Inside the bounds. float32 coordinates of up to 3 m carry 2e-4 mm rounding, hence
    # 1e-3 mm; strips measure v only as a cluster centroid (within one pitch of the true
    # point), so on a trapezoid the u bound is taken at v + pitch_v (it grows with v).
    tol = 1e-3
    assert (np.abs(uvw[:, 1]) <= det.hv[idx] + tol).all()
    v_wide = np.minimum(uvw[:, 1] + det.pitch_v[idx], det.hv[idx])
    hu = det.min_hu[idx] + (det.max_hu[idx] - det.min_hu[idx]) * (v_wide + det.hv[idx]) / (
        2 * det.hv[idx])
    assert (np.abs(uvw[:, 0]) <= hu + tol).all()
    exact = trackml.inside_module(det, idx, uvw, tolerance=tol)
    assert exact.mean() > 0.999
    # Local -> global is the inverse; the lookup from the point finds the same module.
    back = trackml.local_to_global(det, idx, uvw)
    # The file's rotations carry 6 significant digits, so R R^T = 1 to ~1e-6; local
    # offsets are below 100 mm: 1e-4 mm.
    np.testing.assert_allclose(back, xyz, atol=1e-4)
    found = trackml.find_module(det, layers, xyz, tolerance=tol)
    np.testing.assert_array_equal(found[exact], idx[exact])


def test_real_cells_are_the_measured_position(geometry):
    # Measured local position = charge-weighted mean of the cell centres of the cluster,
    # plus a constant Lorentz shift in the barrels' u (what the simulation reproduces).
    det, _ = geometry
    ev = trackml.read_event(SAMPLES / "event000000001", parts=("hits", "cells"))
    h, c = ev.hits, ev.cells
    idx = trackml.module_index(det, h.volume_id, h.layer_id, h.module_id)
    uvw = trackml.global_to_local(det, idx, np.stack([h.x, h.y, h.z], 1).astype(float))
    row = np.searchsorted(h.hit_id, c.hit_id)
    m = idx[row]
    cu = (c.ch0 + 0.5) * det.pitch_u[m] - det.max_hu[m]
    cv = (c.ch1 + 0.5) * det.pitch_v[m] - det.hv[m]
    wsum = np.bincount(row, c.value, len(h.x))
    mu = np.bincount(row, c.value * cu, len(h.x)) / wsum
    mv = np.bincount(row, c.value * cv, len(h.x)) / wsum
    np.testing.assert_allclose(mv, uvw[:, 1], atol=5e-3)
    endcap = ~np.isin(h.volume_id, [8, 13, 17])
    np.testing.assert_allclose(mu[endcap], uvw[endcap, 0], atol=5e-3)
    for vol, shift in ((8, -0.018), (13, 0.030), (17, 0.028)):
        s = h.volume_id == vol
        assert np.median(mu[s] - uvw[s, 0]) == pytest.approx(shift, abs=3e-3)


def test_bad_geometry_input(tmp_path, geometry):
    det, _ = geometry
    with pytest.raises(ValueError, match="unknown module"):
        trackml.module_index(det, [8], [2], [9999])
    path = tmp_path / "detectors.csv"
    trackml.write_detector(path, det)
    back = trackml.read_detector(path)
    for a, b in zip(det, back, strict=True):
        np.testing.assert_array_equal(a, b)
    lines = path.read_text().splitlines()
    (tmp_path / "bad.csv").write_text(lines[0].replace(",module_t", "") + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column"):
        trackml.read_detector(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("\n".join(lines[:3] + lines[1:2]) + "\n")
    with pytest.raises(ValueError, match=r"dup\.csv: duplicated"):
        trackml.read_detector(tmp_path / "dup.csv")
