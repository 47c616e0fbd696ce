"""The TrackML score against hand-computed cases, the challenge's algorithm and real truth."""

import math
import pathlib

import numpy as np
import pytest

from jaxgen.data import trackml
from jaxgen.metrics import trackml as score

SUBSET = pathlib.Path(__file__).parents[1] / "data" / "trackml_samples" / "event000000001"


def _reference_score(pid, w, tid):
    """The challenge's score.py loop (majority = first of the most-hit particles by id)."""
    counts = {}
    for p in pid:
        counts[p] = counts.get(p, 0) + 1
    total = sum(w)
    by_track = {}
    for p, x, t in zip(pid, w, tid, strict=True):
        by_track.setdefault(t, []).append((p, x))
    result = 0.0
    for hits in by_track.values():
        per = {}
        for p, x in hits:
            n, s = per.get(p, (0, 0.0))
            per[p] = (n + 1, s + x)
        best = min(per, key=lambda p: (-per[p][0], p))
        n_maj, w_maj = per[best]
        if 2 * n_maj > len(hits) and 2 * n_maj > counts[best]:
            result += w_maj / total
    return result


def _ten_hit_particle():
    # Particle 7: 10 hits of weight 0.1; noise hits (particle 0) of weight 0.
    pid = np.array([7] * 10 + [0] * 4)
    w = np.array([0.1] * 10 + [0.0] * 4)
    return pid, w


def test_hand_computed_cases():
    pid, w = _ten_hit_particle()
    noise_own = [100, 101, 102, 103]
    # Perfect: the particle in one track, each noise hit alone.
    assert score.score_labels(pid, w, np.array([1] * 10 + noise_own)) == pytest.approx(1.0)
    # All hits in one track: three 10-hit particles, none has more than half the track.
    pid3 = np.repeat([7, 8, 9], 10)
    assert score.score_labels(pid3, np.full(30, 1 / 30), np.zeros(30, int)) == 0.0
    # One hit per track: 1/10 of the particle in each.
    assert score.score_labels(pid, w, np.arange(14)) == 0.0
    # Split 6 / 4: only the 6-hit track is good -> 0.6.
    split64 = np.array([1] * 6 + [2] * 4 + noise_own)
    assert score.score_labels(pid, w, split64) == pytest.approx(0.6)
    # Split 5 / 5: neither half has more than half of the particle -> 0.
    split55 = np.array([1] * 5 + [2] * 5 + noise_own)
    assert score.score_labels(pid, w, split55) == 0.0
    # Noise-only tracks add nothing, whatever their grouping.
    for noise_tracks in ([100] * 4, [100, 100, 101, 101], noise_own):
        t = np.array([1] * 6 + [2] * 4 + noise_tracks)
        assert score.score_labels(pid, w, t) == pytest.approx(0.6)


def test_purity_conditions_are_strict():
    # Track 1: 3 hits of particle 7 + 3 hits of particle 8 (purity exactly 1/2): not good.
    pid = np.array([7, 7, 7, 8, 8, 8, 7, 8])
    w = np.full(8, 1 / 8)
    assert score.score_labels(pid, w, np.array([1, 1, 1, 1, 1, 1, 2, 3])) == 0.0
    # Ties: majority is the smaller particle id (7); 3 of its 4 hits -> 3/8.
    t = score.analyze_tracks(pid, w, np.array([1, 1, 1, 1, 1, 1, 2, 3]))
    assert t.major_particle_id[0] == 7


def test_matches_the_challenge_algorithm_on_random_submissions():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n_part = rng.integers(2, 30)
        pid = rng.integers(0, n_part, size=200)
        w = np.where(pid == 0, 0.0, rng.random(200))
        # Start from the truth and reassign a random fraction of hits (randomize.shuffle_hits).
        tid = pid.copy()
        move = rng.random(200) < rng.uniform(0.0, 0.6)
        tid[move] = rng.integers(0, n_part + 5, size=move.sum())
        got = score.score_labels(pid, w, tid)
        assert got == pytest.approx(_reference_score(pid.tolist(), w.tolist(), tid.tolist()),
                                    abs=1e-12), trial


def test_real_truth_as_submission_scores_one():
    ev = trackml.read_event(SUBSET, parts=("hits", "particles", "truth"))
    tr = ev.truth
    # The subset's weights are the original event's (they sum to about 0.05): normalised.
    assert 0.03 < tr.weight.sum() < 0.07
    sub = trackml.Submission(np.ones_like(tr.hit_id), tr.hit_id,
                             np.where(tr.particle_id == 0, 0, tr.particle_id))
    assert score.score_event(tr, sub) == pytest.approx(1.0, abs=1e-6)
    assert score.score_event(tr, sub, primaries_only=True) == pytest.approx(1.0, abs=1e-6)
    # Hits shuffled between tracks lose score.
    rng = np.random.default_rng(1)
    shuffled = sub.track_id.copy()
    idx = rng.choice(len(shuffled), len(shuffled) // 5, replace=False)
    shuffled[idx] = rng.permutation(shuffled[idx])
    s = score.score_event(tr, sub._replace(track_id=shuffled))
    assert 0.3 < s < 0.99
    assert s == pytest.approx(_reference_score(tr.particle_id.tolist(),
                                               tr.weight.astype(float).tolist(),
                                               shuffled.tolist()), abs=1e-9)


def test_real_weights_are_the_throughput_weights():
    # The subset's truth weights are the Throughput-phase weights (secondaries at 0):
    # recomputing them from pT and hit order reproduces them up to normalisation; the file
    # stores float32 with 6 significant digits, so rtol 1e-5.
    ev = trackml.read_event(SUBSET, parts=("hits", "particles", "truth"))
    tr, pa = ev.truth, ev.particles
    w = trackml.hit_weights(tr.particle_id, tr.tz, pa.particle_id, pa.vz, pa.px, pa.py,
                            primaries_only=True)
    ref = tr.weight.astype(np.float64) / tr.weight.astype(np.float64).sum()
    np.testing.assert_allclose(w, ref, rtol=1e-5, atol=1e-9)
    # Accuracy-phase weights also count secondaries: secondaries' hits get weight > 0.
    w_all = trackml.hit_weights(tr.particle_id, tr.tz, pa.particle_id, pa.vz, pa.px, pa.py)
    gen = trackml.decode_particle_id(tr.particle_id)["generation"]
    assert (w_all[(gen > 0)] > 0).any() and (w[(gen > 0)] == 0).all()
    assert w_all.sum() == pytest.approx(1.0)


def test_particle_id_fields_round_trip():
    pid = np.array([4503668346847232, 0x1001B002001001, 0])
    f = trackml.decode_particle_id(pid)
    np.testing.assert_array_equal(f["generation"], [0, 2, 0])
    np.testing.assert_array_equal(trackml.encode_particle_id(**f), pid)


def test_throughput_score():
    # S = sqrt(log(1 + 600 / t) * (A - 0.5)^2); the phase winner: A = 0.944, t = 0.56 s.
    assert score.throughput_score(0.944, 0.56) == pytest.approx(
        math.sqrt(math.log(1 + 600 / 0.56)) * 0.444)
    assert score.throughput_score(0.944, 0.56) == pytest.approx(1.17, abs=0.01)
    assert score.throughput_score(0.4, 1.0) == 0.0
    assert score.throughput_score(0.9, 0.0) == -1.0
    assert score.throughput_score(0.9, 601.0) == -1.0
    with pytest.raises(ValueError, match="finite"):
        score.throughput_score(float("nan"), 1.0)


BAD_INPUTS = {
    "length": (([1, 2], [0.5, 0.5], [1]), "`track_id` must have length 2"),
    "negative track": (([1, 2], [0.5, 0.5], [1, -1]), "non-negative"),
    "float ids": (([1.0, 2.0], [0.5, 0.5], [1, 1]), "`particle_id` must hold integers"),
    "nan weight": (([1, 2], [0.5, float("nan")], [1, 1]), "`weight` contains NaN"),
    "zero weight": (([0, 0], [0.0, 0.0], [1, 1]), "sums to zero"),
    "2d": (([[1, 2]], [0.5, 0.5], [1, 1]), "must be 1-D"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_rejected(case):
    args, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        score.score_labels(*(np.asarray(a) for a in args))


def test_submission_must_cover_every_hit_once():
    tr = trackml.Truth(np.array([1, 2, 3]), np.array([5, 5, 0]), *([np.zeros(3)] * 6),
                       weight=np.array([0.5, 0.5, 0.0]))
    with pytest.raises(ValueError, match="no track for 1 hit"):
        score.score_event(tr, trackml.Submission(None, np.array([1, 2]), np.array([0, 0])))
    with pytest.raises(ValueError, match="more than once"):
        score.score_event(tr, trackml.Submission(None, np.array([1, 2, 3, 3]),
                                                 np.array([0, 0, 1, 2])))
    ok = trackml.Submission(None, np.array([3, 2, 1, 99]), np.array([4, 0, 0, 1]))
    assert score.score_event(tr, ok) == pytest.approx(1.0)


def test_command_line(tmp_path, capsys):
    tr = trackml.read_event(SUBSET, parts=("hits", "truth")).truth
    sub = trackml.Submission(np.ones_like(tr.hit_id), tr.hit_id, tr.particle_id)
    path = trackml.write_submission(tmp_path / "sub.csv", sub)
    assert score.main([str(SUBSET), str(path)]) == 0
    assert capsys.readouterr().out.strip() == "1.000000"
    assert score.main([str(SUBSET), str(path), "--throughput"]) == 0
    assert score.main([str(SUBSET)]) == 2
    bad = trackml.write_submission(tmp_path / "bad.csv", sub._replace(
        event_id=sub.event_id[:-1], hit_id=sub.hit_id[:-1], track_id=sub.track_id[:-1]))
    assert score.main([str(SUBSET), str(bad)]) == 2
    assert "no track for 1 hit" in capsys.readouterr().err
