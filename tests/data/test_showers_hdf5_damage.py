"""Damaged shower HDF5 files: each kind of damage is a ValueError naming file and dataset.

A small valid file (20 hand-made showers, no simulation) is written once; each case
damages a copy and reads it.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.data import showers as S

N, L, P = 20, 3, 4


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    counts = rng.integers(1, P + 1, (N, L)).astype(np.int32)
    mask = np.arange(P) < counts[..., None]
    pts = rng.normal(size=(N, L, P, 3)).astype(np.float32)
    pts[..., 2] = np.abs(pts[..., 2])
    pts = np.where(mask[..., None], pts, 0).astype(np.float32)
    showers = S.Showers(jnp.asarray(pts), jnp.asarray(mask), jnp.asarray(counts),
                        jnp.full(N, 65.0, jnp.float32), jnp.zeros(N, jnp.float32),
                        jnp.zeros(N, jnp.float32))
    path = tmp_path_factory.mktemp("showers") / "good.h5"
    S.write_hdf5(path, showers, drop_empty=False)
    back, _, _ = S.read_hdf5(path)
    np.testing.assert_array_equal(back.counts, counts)
    return path


def _replace(f, name, data):
    del f[name]
    f[name] = data


def _edit_config(f, **changes):
    cfg = json.loads(f.attrs["config"])
    cfg.update(changes)
    f.attrs["config"] = json.dumps(cfg)


def _drop_rows(f, keep=15):
    for name in list(f):
        _replace(f, name, f[name][:keep])


# name -> (how to damage an open file, or bytes written over the whole file; message).
H5_CASES = {
    "missing counts": (lambda f: f.__delitem__("counts"),
                       r"counts: the dataset is missing"),
    "missing points": (lambda f: f.__delitem__("points"),
                       r"points: the dataset is missing"),
    "missing energy": (lambda f: f.__delitem__("energy"),
                       r"energy: the dataset is missing"),
    "missing layer_1 grid": (lambda f: f.__delitem__("layer_1"),
                             r"layer_1: the dataset is missing"),
    "missing config": (lambda f: f.attrs.__delitem__("config"),
                       r"config: the attribute is missing"),
    "config not JSON": (lambda f: f.attrs.__setitem__("config", '{"energy": 6'),
                        r"config: the attribute is not JSON"),
    "config not an object": (lambda f: f.attrs.__setitem__("config", "[1, 2]"),
                             r"config: the attribute is not a JSON object"),
    "unknown config field": (lambda f: _edit_config(f, n_stepz=24),
                             r"config: unknown field\(s\) \['n_stepz'\]"),
    "invalid config value": (lambda f: _edit_config(f, n_steps=-3),
                             r"config: invalid configuration: .*n_steps"),
    "points of wrong rank": (lambda f: _replace(f, "points", f["points"][..., 0]),
                             r"points: shape \(20, 3, 4\); expected \(20, 3, 'any', 3\)"),
    "counts rows disagree": (lambda f: _replace(f, "counts", f["counts"][:10]),
                             r"counts: shape \(10, 3\); expected \(20, 3\)"),
    "grid of other bins": (lambda f: _replace(f, "layer_2", f["layer_2"][:, :5]),
                           r"layer_2: shape \(20, 5, 6\); expected \(20, 12, 6\)"),
    "energies as strings": (lambda f: _replace(f, "energy", np.full((N, 1), b"65.0")),
                            r"energy: dtype \|S4 is not of kind 'f'"),
    "float counts": (lambda f: _replace(f, "counts", f["counts"][...].astype(np.float32)),
                     r"counts: dtype float32 is not of kind 'iu'"),
    "non-finite energy": (lambda f: _replace(f, "energy", np.full((N, 1), np.nan, np.float32)),
                          r"energy: 20 non-finite value\(s\) \(first at row \(0, 0\)\)"),
    "negative counts": (lambda f: _replace(f, "counts", -f["counts"][...]),
                        r"counts: negative point counts"),
    "dataset replaced by a group": (lambda f: (f.__delitem__("unread"),
                                               f.create_group("unread")),
                                    r"unread: is a group, not a dataset"),
    "extra layer": (lambda f: f.__setitem__("layer_3", f["layer_2"][...]),
                    r"config: the configuration has 3 layer\(s\) but the file also "
                    r"holds \['layer_3'\]"),
    "rows removed from every dataset": (_drop_rows,
                                        r"n_kept: the file holds 15 showers but its "
                                        r"attribute says 20"),
}


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_damaged_hdf5_content_is_named(good_file, tmp_path, case):
    damage, match = H5_CASES[case]
    path = tmp_path / "bad.h5"
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {match}"):
        S.read_hdf5(path)


BYTE_CASES = {
    "truncated": (lambda b: b[: len(b) // 2], r"cannot be opened: the file is truncated"),
    "empty": (lambda b: b"", r"the file is empty \(0 bytes\)"),
    "not HDF5": (lambda b: b"energy,counts\n1,2\n", r"is not an HDF5 file"),
    "signature only": (lambda b: b[:16], r"cannot be opened: the file is truncated"),
}


@pytest.mark.parametrize("case", sorted(BYTE_CASES))
def test_damaged_hdf5_file_is_named(good_file, tmp_path, case):
    damage, match = BYTE_CASES[case]
    path = tmp_path / "bad.h5"
    path.write_bytes(damage(good_file.read_bytes()))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {match}"):
        S.read_hdf5(path)


def test_flipped_byte_in_a_dataset_fails_its_checksum(good_file, tmp_path):
    path = tmp_path / "bad.h5"
    shutil.copy(good_file, path)
    with h5py.File(path, "r") as f:
        offset = f["escaped"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: escaped: cannot be read"):
        S.read_hdf5(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'nope.h5'}: no such file")):
        S.read_hdf5(tmp_path / "nope.h5")


KILLED_WRITE = """
import os, sys
from jaxgen.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half an HDF5 file")
    os._exit(9)  # killed in the middle of the write
"""


def test_next_write_removes_the_temporary_file_of_a_killed_write(good_file, tmp_path):
    target = tmp_path / "out.h5"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(target)], env=env,
                          check=False)
    assert done.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".out.h5.") and left[0].endswith(".tmp")
    assert not target.exists()
    # A temporary file of the older form (no process id) is also removed; one of a live
    # writer (pid 1 runs on any host: here it stands for a concurrent writer) is kept.
    (tmp_path / ".out.h5.k3j_x9q2.tmp").write_bytes(b"old")
    live = tmp_path / f".out.h5.{left[0].split('.')[3].rpartition('-')[0]}-1.abcd.tmp"
    live.write_bytes(b"live")
    showers, _, attrs = S.read_hdf5(good_file)
    S.write_hdf5(target, S.Showers(*(jnp.asarray(a) for a in showers)), attrs["config"],
                 drop_empty=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "out.h5"])
    again, _, _ = S.read_hdf5(target)
    np.testing.assert_array_equal(again.points, showers.points)
