import gzip
import pathlib

import jax
import numpy as np
import pytest

from jaxgen.data import dijets

SHARED = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = pathlib.Path("/work/shared/data")


def test_packaged_samples_counts():
    # Counts from the READMEs of ../shared/data/lhco_rnd_sr and lhco_rnd_full_mjj.
    tr, va, sg = dijets.load_sr("train"), dijets.load_sr("val"), dijets.load_sr("signal")
    assert tr.features.shape == (60000, 4) and va.features.shape == (60000, 4)
    assert sg.features.shape == (27263, 4) and int(sg.labels.min()) == 1
    assert round(float(tr.labels.mean()), 4) == 0.0066
    assert round(float(va.labels.mean()), 4) == 0.0062
    full = dijets.load_full_mjj()
    assert full.features.shape == (100000, 5) and int(full.labels.sum()) == 9059
    sr = np.asarray(dijets.Regions().in_sr(full.mjj))
    assert int(sr.sum()) == 19789 and int(np.asarray(full.labels)[sr].sum()) == 6908


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared data folder is absent")
def test_packaged_equals_source_files():
    pairs = [("lhco_rnd_sr/innerdata_train.npy.gz", dijets.load_sr("train"), "sr"),
             ("lhco_rnd_full_mjj/lhco_rnd_first100k.npy.gz", dijets.load_full_mjj(), "full")]
    for rel, ev, layout in pairs:
        src = np.load(gzip.open(SHARED / rel))
        got = np.column_stack([ev.mjj, ev.features, ev.labels])
        # float32 storage: relative rounding <= 2^-24 ~ 6e-8.
        np.testing.assert_allclose(got, src, rtol=1.2e-7, atol=1e-12)
        again = dijets.read_lhco_file(SHARED / rel, layout)
        np.testing.assert_array_equal(np.asarray(again.features), np.asarray(ev.features))


def test_inject():
    full = dijets.load_full_mjj()
    ev = dijets.inject(full, jax.random.PRNGKey(0), n_signal=500)
    assert int(ev.labels.sum()) == 500 and ev.mjj.shape[0] == 90941 + 500
    ev2 = dijets.inject(full, jax.random.PRNGKey(0), s_over_b=0.01)
    r = dijets.Regions()
    sr = np.asarray(r.in_sr(ev2.mjj))
    lab = np.asarray(ev2.labels)
    # S/B in the SR: the count is an expectation; the random subset's SR share is
    # binomial, so S_SR has sd ~ sqrt(n f (1 - f)) ~ 8 events of ~130: tolerance 4 sd.
    s_sr, b_sr = lab[sr].sum(), (lab[sr] == 0).sum()
    assert abs(s_sr - 0.01 * b_sr) < 4 * np.sqrt(0.01 * b_sr)
    with pytest.raises(ValueError, match="exceeds"):
        dijets.inject(full, jax.random.PRNGKey(0), n_signal=10_000)
    with pytest.raises(ValueError, match="exactly one"):
        dijets.inject(full, jax.random.PRNGKey(0))


def _save(path, a, gz=False):
    if gz:
        with gzip.open(path, "wb") as f:
            np.save(f, a)
    else:
        np.save(path, a)
    return path


def _good(n=5, width=6):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 0.9, (n, width))
    a[:, 0] = 3.5
    a[:, -1] = [0, 1, 0, 0, 1][:n]
    return a


@pytest.mark.parametrize(
    "make, layout, problem",
    [
        (lambda p: _save(p, _good(width=7)), "sr", r"shape \(5, 7\); expected \(N, 6\)"),
        (lambda p: _save(p, np.where(np.eye(5, 6, 2) > 0, np.nan, _good())), "sr", "NaN"),
        (lambda p: _save(p, np.column_stack([_good()[:, :-1], np.full(5, 2.0)])), "sr",
         "labels .* must be 0 or 1"),
        (lambda p: _save(p, np.column_stack([np.full(5, 5.0), _good()[:, 1:]])), "sr",
         "outside the signal region"),
        (lambda p: _save(p, _good(width=6)), "full", r"expected \(N, 7\)"),
        (lambda p: p.write_bytes(b"not numpy at all") and p, "sr", "not a NumPy"),
        (lambda p: p.write_bytes(gzip.compress(b"\x93NUMPY" * 100)[:40]) and p, "sr",
         "truncated"),
        (lambda p: p, "sr", "no such file"),
    ],
)
def test_malformed_files_are_rejected_by_name(tmp_path, make, layout, problem):
    path = tmp_path / "lhco_events.npy"
    make(path)
    with pytest.raises(ValueError, match=problem) as e:
        dijets.read_lhco_file(path, layout)
    assert "lhco_events.npy" in str(e.value)


def test_gzip_roundtrip_and_bad_layout(tmp_path):
    p = _save(tmp_path / "ok.npy.gz", _good(), gz=True)
    ev = dijets.read_lhco_file(p)
    assert ev.features.shape == (5, 4) and ev.labels.tolist() == [0, 1, 0, 0, 1]
    with pytest.raises(ValueError, match="layout"):
        dijets.read_lhco_file(p, "wide")
    with pytest.raises(ValueError, match="split"):
        dijets.load_sr("test")
