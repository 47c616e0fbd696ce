"""The 8x8 handwritten digits, packaged with jaxgen.

1,797 images of 8x8 pixels with integer intensities 0..16, and their labels 0..9: the
test set of the UCI "Optical Recognition of Handwritten Digits" data (Alpaydin & Kaynak,
1998), exactly as distributed with scikit-learn (``sklearn.datasets.load_digits``,
BSD-3-Clause), stored in ``digits.npz`` so that experiments need no scikit-learn. Used by
the funnel, flowification and InfoSCC-GAN experiments.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np

_PATH = pathlib.Path(__file__).with_name("digits.npz")

#: Largest pixel intensity (intensities are integers in ``[0, MAX_INTENSITY]``).
MAX_INTENSITY = 16


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_PATH) as f:
        return f["images"], f["labels"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(images, labels)``: ``(1797, 8, 8)`` uint8 in ``[0, 16]`` and ``(1797,)`` uint8.

    Returns copies, so callers may modify them.
    """
    images, labels = _load()
    return images.copy(), labels.copy()
