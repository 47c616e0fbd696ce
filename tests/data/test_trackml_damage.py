"""Damaged TrackML files: each kind of damage is a ValueError naming the file.

Each case copies the real sample event (``trackml_samples/event000000001``, four gzip
tables) into ``tmp_path``, damages one of its files, and reads the event.
"""

import gzip
import pathlib
import re
import shutil

import numpy as np
import pytest

from jaxgen.data import trackml

SAMPLES = pathlib.Path(__file__).with_name("trackml_samples")
EVENT = "event000000001"


def _text(raw: bytes) -> str:
    return gzip.decompress(raw).decode()


def _with_lines(edit):
    """A damage that edits the decompressed lines, then re-compresses them."""
    def damage(raw):
        lines = _text(raw).splitlines()
        return gzip.compress(("\n".join(edit(lines)) + "\n").encode())
    return damage


def _flip_middle(raw):
    i = len(raw) // 2
    return raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:]


def _extra_field(lines):
    lines[3] += ",7"
    return lines


def _missing_field(lines):
    lines[3] = lines[3].rsplit(",", 1)[0]
    return lines


# name -> (part damaged, damage of the .csv.gz bytes, message after the file name).
CASES = {
    "truncated gzip": ("hits", lambda b: b[: len(b) // 2],
                       r"the gzip stream is truncated \(the file ends early\)"),
    "flipped byte in gzip": ("cells", _flip_middle, r"the gzip stream is damaged"),
    "gzip signature then garbage": ("truth", lambda b: b[:2] + bytes(range(256)) * 4,
                                    r"the gzip stream is damaged"),
    "binary garbage": ("hits", lambda b: bytes(range(128, 256)) * 8,
                       r"is not a text file \(byte 0 is not UTF-8\)"),
    "empty file": ("hits", lambda b: b"", r"the file is empty \(no header line"),
    "empty gzip stream": ("particles", lambda b: gzip.compress(b""),
                          r"the file is empty \(no header line of the particles table\)"),
    "header-only hits": ("hits", _with_lines(lambda lines: lines[:1]),
                         r"the hits table has 0 data row\(s\); the format requires at "
                         r"least 1"),
    "header-only cells": ("cells", _with_lines(lambda lines: lines[:1]),
                          r"the cells table has 0 data row\(s\)"),
    "header-only truth": ("truth", _with_lines(lambda lines: lines[:1]),
                          r"the truth table has 0 data row\(s\)"),
    "header-only particles": ("particles", _with_lines(lambda lines: lines[:1]),
                              r"the particles table has 0 data row\(s\)"),
    "row with an extra field": ("hits", _with_lines(_extra_field),
                                r"line 4 has 8 fields, the header has 7"),
    "row with a missing field": ("truth", _with_lines(_missing_field),
                                 r"line 4 has 8 fields, the header has 9"),
    "plain text cut mid-row": ("particles",
                               lambda b: gzip.compress(_text(b)[:-7].encode()),
                               r"line 549 has 8 fields, the header has 10"),
    "duplicated column": ("hits", _with_lines(lambda ls: [ls[0] + ",x"] + [
        line + ",0" for line in ls[1:]]), r"duplicated column\(s\) \['x'\] in the header"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_event_file_is_named(tmp_path, case):
    part, damage, match = CASES[case]
    for f in SAMPLES.glob(f"{EVENT}-*.csv.gz"):
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / f"{EVENT}-{part}.csv.gz"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(ValueError, match=f"^{re.escape(str(target))}: {match}"):
        trackml.read_event(tmp_path / EVENT)


def test_undamaged_copy_reads(tmp_path):
    """The copies themselves are fine: the damage alone makes the cases fail."""
    for f in SAMPLES.glob(f"{EVENT}-*.csv.gz"):
        shutil.copy(f, tmp_path / f.name)
    event = trackml.read_event(tmp_path / EVENT)
    assert len(event.hits.hit_id) == 5527


def test_empty_submission_and_detector_are_rejected(tmp_path):
    sub = tmp_path / "submission.csv"
    sub.write_text("event_id,hit_id,track_id\n")
    empty = "the submission table has 0 data row"
    with pytest.raises(ValueError, match=f"^{re.escape(str(sub))}: {empty}"):
        trackml.read_submission(sub)
    det = tmp_path / "detectors.csv.gz"
    raw = trackml.default_detector_path().read_bytes()
    det.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match=f"^{re.escape(str(det))}: the gzip stream is truncated"):
        trackml.read_detector(det)
    header = gzip.decompress(raw).split(b"\n", 1)[0]
    det.write_bytes(gzip.compress(header + b"\n"))
    empty = "the detector table has 0 data row"
    with pytest.raises(ValueError, match=f"^{re.escape(str(det))}: {empty}"):
        trackml.read_detector(det)


def test_reading_emits_no_numpy_warnings(tmp_path):
    """A one-row table parses without numpy's 'input contained no data' warnings."""
    (tmp_path / f"{EVENT}-hits.csv").write_text(
        "hit_id,x,y,z,volume_id,layer_id,module_id\n1,1.0,2.0,3.0,8,2,1\n")
    event = trackml.read_event(tmp_path / EVENT)  # warnings are errors in this suite
    np.testing.assert_array_equal(event.hits.hit_id, [1])
