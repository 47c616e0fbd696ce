"""The packaged digits are scikit-learn's, unchanged."""

import numpy as np

from jaxgen.data import digits


def test_packaged_digits_equal_scikit_learns():
    from sklearn.datasets import load_digits

    images, labels = digits.load_digits()
    ref = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(labels, ref.target)
    assert images.max() == digits.MAX_INTENSITY


def test_load_digits_returns_copies():
    images, _ = digits.load_digits()
    images[:] = 0
    assert digits.load_digits()[0].max() == digits.MAX_INTENSITY
