"""InfoSCC-GAN: the EigenGAN subspace layer and its orthogonality regulariser, the
conditional generator, errors, and a smoke run of the experiment."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import infoscc as experiment
from experiments import make_config
from jaxgen.generative import ContrastiveEncoder
from jaxgen.generative import ContrastiveModel
from jaxgen.generative import LinearProbe
from jaxgen.methods import infoscc as I

Q, DIM = 6, 20


def _orthonormal_rows(seed=0):
    a = jax.random.normal(jax.random.key(seed), (DIM, DIM))
    q, _ = jnp.linalg.qr(a)
    return q[:Q]  # (6, 20) with orthonormal rows


def test_orthogonality_penalty_zero_for_orthonormal_rows():
    """U U^T = I exactly in exact arithmetic; float32 QR leaves ~1e-7 per entry."""
    u = _orthonormal_rows()
    assert float(I.orthogonality_penalty(u)) < 1e-12
    assert float(jax.jit(I.orthogonality_penalty)(u)) < 1e-12


def test_orthogonality_penalty_closed_forms():
    """2U: U U^T = 4I, penalty mean((4I - I)^2) = 9 Q / Q^2 = 9/Q. Two equal unit rows:
    Gram [[1,1],[1,1]], penalty (0 + 1 + 1 + 0)/4 = 1/2."""
    u = _orthonormal_rows()
    np.testing.assert_allclose(I.orthogonality_penalty(2.0 * u), 9.0 / Q, rtol=1e-5)
    v = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(I.orthogonality_penalty(v), 0.5, rtol=1e-6)


def test_subspace_layer_initialisation_and_map():
    layer = I.SubspaceLayer(DIM, Q)
    params = layer.init(jax.random.key(0), jnp.zeros((1, Q)))["params"]
    assert float(I.orthogonality_penalty(params["U"])) < 1e-10
    np.testing.assert_allclose(params["L"], [18.0, 15.0, 12.0, 9.0, 6.0, 3.0])
    np.testing.assert_array_equal(params["mu"], 0.0)
    # phi(e_j) = L_j U_j + mu: coordinate j moves along the j-th basis row.
    out = layer.apply({"params": params}, jnp.eye(Q))
    np.testing.assert_allclose(out, params["L"][:, None] * params["U"], rtol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    """An untrained model assembled from initialised parts (no training)."""
    cfg = I.InfoSCCConfig(num_classes=3, encoder_features=(16, 8), encoder_projection=(8, 4),
                          widths=(16, 32), d_hidden=(16,), noise_dim=4)
    module = ContrastiveEncoder(cfg.encoder_features, cfg.encoder_projection)
    encoder = ContrastiveModel(module, module.init(jax.random.key(0), jnp.zeros((1, 8, 8))),
                               None)
    probe = LinearProbe(nn.Dense(3).init(jax.random.key(1), jnp.zeros((1, 8))), 3, None)
    weights = jnp.full(3, 1 / 3)
    gen, spec, g_params, d_params = I.build_gan(jax.random.key(2), encoder, probe, weights,
                                                (8, 8), cfg)
    model = I.InfoSCCModel(encoder, probe, jnp.zeros(3, jnp.int32), weights, gen, spec,
                           g_params, {})
    return model, spec, g_params, d_params


def test_generator_shapes_range_and_regularisers(tiny):
    model, spec, g_params, d_params = tiny
    imgs = I.generate(model, jax.random.key(3), jnp.array([0, 1, 2, 2]))
    assert imgs.shape == (4, 8, 8)
    assert float(jnp.max(jnp.abs(imgs))) <= 1.0
    # Two subspace layers, both orthonormal at initialisation.
    assert float(I.generator_orthogonality(g_params)) < 1e-10
    assert spec.discriminate(d_params, imgs).shape == (4,)
    # The classification regulariser is differentiable through encoder and classifier.
    val, grads = jax.jit(jax.value_and_grad(spec.aux_loss))(g_params, jax.random.key(4))
    assert np.isfinite(float(val))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    acc, per_class = I.attribute_control_accuracy(model, jax.random.key(5), 4)
    assert 0.0 <= acc <= 1.0 and per_class.shape == (3,)


def test_generate_vmap_and_jit_match(tiny):
    model, spec, g_params, _ = tiny
    latent = spec.sample_latent(jax.random.key(0), 6)
    direct = spec.generate(g_params, latent)
    jitted = jax.jit(spec.generate)(g_params, latent)
    one = jax.vmap(lambda n, y, e: spec.generate(g_params, {"noise": n[None], "y": y[None],
                                                            "eig": e[None]})[0])
    per_example = one(latent["noise"], latent["y"], latent["eig"])
    np.testing.assert_allclose(jitted, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_example, direct, rtol=1e-5, atol=1e-6)


def test_classification_loss_is_capped(tiny):
    """The generator's classification term is mean(relu(CE - log(1/cls_confidence))):
    cls_confidence=1 is the plain CE (the paper's), and a confidence below
    exp(-max CE) makes it exactly 0, so a confidently classified sample is not pushed
    further (on the ring, the plain CE pushed samples off the data)."""
    model, spec, g_params, _ = tiny
    enc, probe, weights = model.encoder, model.probe, model.label_weights
    cfg = I.InfoSCCConfig(num_classes=3, encoder_features=(16, 8), encoder_projection=(8, 4),
                          widths=(16, 32), d_hidden=(16,), noise_dim=4, cls_confidence=1.0)
    key = jax.random.key(4)
    _, plain, gp, _ = I.build_gan(jax.random.key(2), enc, probe, weights, (8, 8), cfg)
    latent = plain.sample_latent(key, cfg.gan.batch_size)
    feats = enc.module.apply(enc.params, plain.generate(gp, latent), method="embed")
    logits = I.probe_logits(probe.params, feats)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), latent["y"][:, None], 1)[:, 0]
    np.testing.assert_allclose(plain.aux_loss(gp, key), jnp.mean(ce), rtol=1e-5)
    margin = float(jnp.median(ce))
    capped_cfg = dataclasses.replace(cfg, cls_confidence=float(np.exp(-margin)))
    _, capped, _, _ = I.build_gan(jax.random.key(2), enc, probe, weights, (8, 8), capped_cfg)
    np.testing.assert_allclose(capped.aux_loss(gp, key), jnp.mean(jax.nn.relu(ce - margin)),
                               rtol=1e-4, atol=1e-7)
    off_cfg = dataclasses.replace(cfg, cls_confidence=float(np.exp(-2 * jnp.max(ce))))
    _, off, _, _ = I.build_gan(jax.random.key(2), enc, probe, weights, (8, 8), off_cfg)
    assert float(off.aux_loss(gp, key)) == 0.0


def test_custom_augmentation_is_used():
    """Stage 1 trains the encoder on the views of `config.augment`, not the digits default:
    a custom augmentation is traced (called) while the encoder trains, on vector data."""
    calls = []

    def augment(key, x):
        calls.append(x.shape)
        return x + 0.05 * jax.random.normal(key, x.shape)

    cfg = I.InfoSCCConfig(num_classes=2, encoder_features=(8, 4), encoder_projection=(4, 2),
                          augment=augment,
                          encoder_fit=dataclasses.replace(I.InfoSCCConfig().encoder_fit,
                                                          epochs=1, batch_size=16),
                          probe_fit=dataclasses.replace(I.InfoSCCConfig().probe_fit,
                                                        epochs=1, batch_size=16))
    x = jax.random.uniform(jax.random.key(0), (32, 2), minval=-1, maxval=1)
    y = (x[:, 0] > 0).astype(jnp.int32)
    encoder, _, labels = I.fit_encoder_and_classifier(jax.random.key(1), x, y, cfg)
    assert calls and all(shape[-1] == 2 for shape in calls)
    np.testing.assert_array_equal(labels, y)
    assert I.InfoSCCConfig().augment is None  # None: DIGITS_AUGMENT, used for images


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: I.generate(m, jax.random.key(0), jnp.array([0, 3])), r"\[0, 3\)"),
        (lambda m: I.generate(m, jax.random.key(0), jnp.array([0, 1]), jnp.zeros((2, 2, 5))),
         "eig"),
        (lambda m: I.train_infoscc(jax.random.key(0), jnp.full((4, 8, 8), 2.0)), r"\[-1, 1\]"),
        (lambda m: I.train_infoscc(jax.random.key(0), jnp.zeros((4, 64))), "images"),
        (lambda m: I.train_infoscc(jax.random.key(0), jnp.zeros((4, 8, 8)), jnp.zeros(3)),
         "labels"),
        (lambda m: I.InfoSCCConfig(num_classes=1), "num_classes"),
        (lambda m: I.InfoSCCConfig(diff_augment_p=2.0), "diff_augment_p"),
        (lambda m: I.InfoSCCConfig(cls_confidence=0.0), "cls_confidence"),
        (lambda m: I.InfoSCCConfig(augment="cutout"), "augment"),
        (lambda m: I.train_infoscc(jax.random.key(0), jnp.zeros((4, 2))), "diff_augment_p"),
        (lambda m: experiment.Config(labels="mixed"), "labels"),
        (lambda m: experiment.Config(ablation_losses=("bce",)), "losses"),
        (lambda m: experiment.Config(labels="external", num_classes=5), "num_classes"),
    ],
)
def test_errors(tiny, call, match):
    model = tiny[0]
    with pytest.raises(ValueError, match=match):
        call(model)


def test_experiment_smoke(tmp_path):
    """The quick preset shrunk further (the test budget; R1 and DiffAugment off to cut
    compile time): every metric and plot appears."""
    config = make_config(experiment.Config, experiment.QUICK, encoder_epochs=1, gan_steps=10,
                         ablation_losses=("hinge",), n_per_class=10, r1_weight=0.0,
                         diff_augment_p=0.0, ring_steps=10, ring_encoder_epochs=1,
                         ring_n_per_class=20)
    metrics = experiment.run(config, tmp_path)
    for key in ("attribute_control_accuracy", "frechet_distance", "fd_independent_pixels",
                "fd_full_gaussian_pixels", "fd_real_train_vs_test", "classifier_test_accuracy",
                "ablation", "ring", "checks"):
        assert key in metrics
    assert set(metrics["ablation"]) == {"least_squares", "hinge"}
    assert metrics["ablation"]["hinge"]["per_class_accuracy"].shape == (10,)
    assert len(metrics["checks"]) == 6
    assert len(metrics["ring"]["sw_per_component"]) == 8
    assert (tmp_path / "digits.png").exists() and (tmp_path / "eigen_dimensions.png").exists()
    json.dumps(dataclasses.asdict(config))
