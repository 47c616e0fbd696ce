"""TrackML event I/O on the real samples: counts, consistency, round trips, bad files."""

import gzip
import pathlib

import numpy as np
import pytest

from jaxgen.data import trackml

SAMPLES = pathlib.Path(__file__).parent / "trackml_samples"
SUBSET = SAMPLES / "event000000001"
FULL = SAMPLES / "event000001001"


@pytest.fixture(scope="module")
def subset():
    return trackml.read_event(SUBSET)


def _assert_same(a, b):
    assert a.event_id == b.event_id
    for part in ("hits", "cells", "particles", "truth"):
        ta, tb = getattr(a, part), getattr(b, part)
        assert (ta is None) == (tb is None), part
        if ta is None:
            continue
        for f in ta._fields:
            x, y = getattr(ta, f), getattr(tb, f)
            assert (x is None) == (y is None), (part, f)
            if x is not None:
                assert x.dtype == y.dtype, (part, f)
                np.testing.assert_array_equal(x, y, err_msg=f"{part}.{f}")


def test_reader_counts_on_real_subset(subset):
    # Counts from the samples' README (and the challenge files).
    assert subset.event_id == 1
    assert len(subset.hits.hit_id) == 5527
    assert len(subset.cells.hit_id) == 18564
    assert len(subset.particles.particle_id) == 548
    assert (subset.particles.nhits > 0).sum() == 468
    assert (subset.truth.particle_id == 0).sum() == 829
    assert subset.particles.particle_type is not None
    # Every truth hit id is a hit; the particles' nhits equal the truth counts.
    assert np.isin(subset.truth.hit_id, subset.hits.hit_id).all()
    pid, counts = np.unique(subset.truth.particle_id[subset.truth.particle_id != 0],
                            return_counts=True)
    order = np.argsort(subset.particles.particle_id)
    row = order[np.searchsorted(subset.particles.particle_id[order], pid)]
    np.testing.assert_array_equal(subset.particles.particle_id[row], pid)
    np.testing.assert_array_equal(subset.particles.nhits[row], counts)
    assert subset.hits.x.dtype == np.float32 and subset.particles.particle_id.dtype == np.int64


def test_reader_full_event_without_particle_type():
    ev = trackml.read_event(FULL)
    assert len(ev.hits.hit_id) == 93680
    np.testing.assert_array_equal(ev.hits.hit_id, np.arange(1, 93681))
    assert ev.cells is None and ev.truth is None
    assert ev.particles.particle_type is None
    assert len(ev.particles.particle_id) == 8915
    assert int(ev.particles.nhits.sum()) == 76210


def test_read_events_directory_and_parts():
    events = list(trackml.read_events(SAMPLES, parts=("hits", "particles")))
    assert [e.event_id for e in events] == [1, 1001]
    assert all(e.truth is None and e.cells is None for e in events)
    with pytest.raises(ValueError, match="event000001001-truth"):
        trackml.read_event(FULL, parts=("hits", "truth"))


@pytest.mark.parametrize("compress", [False, True])
def test_write_read_round_trip_is_exact(subset, tmp_path, compress):
    prefix = trackml.write_event(tmp_path, subset, compress=compress)
    suffix = ".csv.gz" if compress else ".csv"
    assert (tmp_path / f"event000000001-hits{suffix}").exists()
    _assert_same(subset, trackml.read_event(prefix))


def test_round_trip_particles_without_type(tmp_path):
    ev = trackml.read_event(FULL)
    trackml.write_event(tmp_path, ev)
    header = (tmp_path / "event000001001-particles.csv").read_text().split("\n", 1)[0]
    assert header == "particle_id,vx,vy,vz,px,py,pz,q,nhits"
    _assert_same(ev, trackml.read_event(tmp_path / "event000001001"))


def test_submission_round_trip(subset, tmp_path):
    n = len(subset.hits.hit_id)
    sub = trackml.Submission(np.full(n, 1), subset.hits.hit_id, np.arange(n) % 7)
    path = trackml.write_submission(tmp_path / "sub.csv", sub)
    assert path.read_text().startswith("event_id,hit_id,track_id\n1,")
    back = trackml.read_submission(path)
    for a, b in zip(sub, back, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="more than once"):
        trackml.write_submission(tmp_path / "bad.csv",
                                 trackml.Submission([1, 1], [5, 5], [0, 1]))


def _write_bad(tmp_path, part, text, compress=False):
    data = gzip.compress(text.encode()) if compress else text.encode()
    (tmp_path / f"event000000007-{part}.csv{'.gz' if compress else ''}").write_bytes(data)


HITS_OK = "hit_id,x,y,z,volume_id,layer_id,module_id\n1,1.0,2.0,3.0,8,2,1\n2,4,5,6,8,2,2\n"
TRUTH_OK = ("hit_id,particle_id,tx,ty,tz,tpx,tpy,tpz,weight\n"
            "1,5,1,2,3,0.1,0.1,0.1,0.5\n2,0,4,5,6,0,0,0,0\n")

BAD_CASES = {
    "missing column": ({"hits": "hit_id,x,y,volume_id,layer_id,module_id\n1,1,2,8,2,1\n"},
                       r"event000000007-hits\.csv: missing column\(s\) \['z'\]"),
    "duplicated hit ids": ({"hits": HITS_OK + "2,7,8,9,8,2,3\n"},
                           r"event000000007-hits\.csv: duplicated hit_id\(s\) \[2\]"),
    "non-finite coordinate": ({"hits": HITS_OK.replace("4,5,6", "4,nan,6")},
                              r"event000000007-hits\.csv: non-finite coordinate `y`"),
    "truth rows without hits": ({"hits": HITS_OK,
                                 "truth": TRUTH_OK + "3,5,1,1,1,0,0,0,0\n"},
                                r"event000000007-truth: 1 row\(s\) without hits"),
    "hits without truth": ({"hits": HITS_OK, "truth": TRUTH_OK.rsplit("2,0", 1)[0]},
                           r"event000000007-truth: 1 hit\(s\) have no truth row"),
    "cells without hits": ({"hits": HITS_OK, "cells": "hit_id,ch0,ch1,value\n9,1,1,0.3\n"},
                           r"event000000007-cells: 1 row\(s\) without hits"),
    "unparsable value": ({"hits": HITS_OK.replace("4,5,6", "4,abc,6")},
                         r"event000000007-hits\.csv: cannot parse"),
    "duplicated particles": ({"hits": HITS_OK,
                              "particles": "particle_id,vx,vy,vz,px,py,pz,q,nhits\n"
                                           "5,0,0,0,1,1,1,1,1\n5,0,0,0,1,1,1,1,1\n"},
                             r"event000000007-particles\.csv: duplicated particle_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_files_are_rejected(tmp_path, case):
    files, match = BAD_CASES[case]
    for part, text in files.items():
        _write_bad(tmp_path, part, text, compress=(part == "truth"))
    with pytest.raises(ValueError, match=match):
        trackml.read_event(tmp_path / "event000000007")


def test_bad_prefix_and_parts(tmp_path):
    with pytest.raises(ValueError, match="eventNNNNNNNNN"):
        trackml.read_event(tmp_path / "run1")
    with pytest.raises(ValueError, match="`parts`"):
        trackml.read_event(SUBSET, parts=("hits", "tracks"))
    with pytest.raises(ValueError, match="not a directory"):
        trackml.list_events(tmp_path / "nope")
