"""Augmentations: shape-preserving, deterministic per key, with their defining properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.generative import augment as A

VECTORS = jax.random.normal(jax.random.key(0), (16, 2))
IMAGES = jax.random.normal(jax.random.key(1), (6, 8, 8)) + 3.0  # nonzero everywhere
IMAGES_C = jax.random.normal(jax.random.key(2), (6, 8, 8, 3)) + 3.0

VECTOR_AUGS = {
    "jitter": functools.partial(A.gaussian_jitter, std=0.1),
    "dropout": functools.partial(A.feature_dropout, rate=0.3),
    "rotation": A.random_rotation_2d,
    "scale": A.random_scale,
    "vector_augment": A.vector_augment(jitter=0.1, dropout=0.2, rotation=0.5, scale=0.1),
}
IMAGE_AUGS = {
    "shift": functools.partial(A.random_shift, max_shift=2),
    "flip": A.random_flip,
    "noise": A.gaussian_noise,
    "cutout": functools.partial(A.cutout, size=3),
    "brightness": A.random_brightness,
    "image_augment": A.image_augment(max_shift=1, flip=True, noise=0.1, cutout_size=2),
    "diff_augment": A.diff_augment,
}
CASES = [(n, f, VECTORS) for n, f in VECTOR_AUGS.items()]
CASES += [(n, f, x) for n, f in IMAGE_AUGS.items() for x in (IMAGES, IMAGES_C)]


@pytest.mark.parametrize("name, fn, x", CASES, ids=[f"{c[0]}-{c[2].ndim}d" for c in CASES])
def test_shape_preserving_and_deterministic(name, fn, x):
    out = fn(jax.random.key(3), x)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, fn(jax.random.key(3), x))
    # Under jit XLA may fuse multiply-adds: equal up to float32 rounding.
    np.testing.assert_allclose(out, jax.jit(fn)(jax.random.key(3), x), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(out, fn(jax.random.key(4), x)), "different keys, same output"


def test_rotation_preserves_norms_and_is_per_example():
    out = A.random_rotation_2d(jax.random.key(0), VECTORS)
    np.testing.assert_allclose(jnp.linalg.norm(out, axis=1), jnp.linalg.norm(VECTORS, axis=1),
                               rtol=1e-5)
    angles = jnp.arctan2(out[:, 1], out[:, 0]) - jnp.arctan2(VECTORS[:, 1], VECTORS[:, 0])
    assert float(jnp.std(jnp.mod(angles, 2 * jnp.pi))) > 0.1


def test_shift_is_a_translation_of_the_content():
    """A single bright pixel in the interior moves by at most max_shift and survives."""
    img = jnp.zeros((32, 8, 8)).at[:, 4, 4].set(1.0)
    out = A.random_shift(jax.random.key(0), img, max_shift=2)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0)
    rows, cols = jnp.nonzero(out.reshape(32, 64))[1] // 8, jnp.nonzero(out.reshape(32, 64))[1] % 8
    assert int(jnp.max(jnp.abs(rows - 4))) <= 2 and int(jnp.max(jnp.abs(cols - 4))) <= 2
    assert len(set(np.asarray(rows * 8 + cols).tolist())) > 1


def test_cutout_zeroes_at_most_a_square():
    out = A.cutout(jax.random.key(0), IMAGES, size=3)
    zeros = jnp.sum(out == 0, axis=(1, 2))
    assert bool(jnp.all((zeros >= 1) & (zeros <= 9)))
    np.testing.assert_array_equal(jnp.where(out == 0, IMAGES, out), IMAGES)


def test_flip_with_p_one_flips_every_image():
    np.testing.assert_array_equal(A.random_flip(jax.random.key(0), IMAGES, p=1.0),
                                  IMAGES[:, :, ::-1])


def test_dropout_rate_zero_is_identity():
    np.testing.assert_array_equal(A.feature_dropout(jax.random.key(0), VECTORS, 0.0), VECTORS)


def test_diff_augment_is_differentiable():
    """DiffAugment sits between generator and discriminator: gradients must flow."""
    g = jax.grad(lambda x: jnp.sum(A.diff_augment(jax.random.key(0), x) ** 2))(IMAGES)
    assert g.shape == IMAGES.shape and bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.sum(jnp.abs(g))) > 0


def test_vmap_over_keys_matches_loop():
    keys = jax.random.split(jax.random.key(5), 3)
    fn = jax.jit(A.image_augment(max_shift=1, noise=0.1, cutout_size=2))
    batched = jax.vmap(fn, in_axes=(0, None))(keys, IMAGES)
    for i in range(3):
        np.testing.assert_allclose(batched[i], fn(keys[i], IMAGES), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: A.feature_dropout(jax.random.key(0), VECTORS, 1.0), "rate"),
        (lambda: A.random_rotation_2d(jax.random.key(0), jnp.ones((4, 3))), "last dimension 2"),
        (lambda: A.random_shift(jax.random.key(0), VECTORS), "x"),
        (lambda: A.random_shift(jax.random.key(0), IMAGES, max_shift=-1), "max_shift"),
        (lambda: A.cutout(jax.random.key(0), IMAGES, size=0), "size"),
        (lambda: A.random_flip(jax.random.key(0), IMAGES, p=1.5), "p"),
        (lambda: A.vector_augment(jitter=-1.0), "jitter"),
        (lambda: A.compose(), "at least one"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
