"""The training engine against analytic optima, plus its failure modes."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.train import FitConfig, fit, fit_ensemble, num_train_steps, poisson_bootstrap_weights

QUIET = dict(progress=False)


def gaussian_nll(params, batch, key):
    """Per-event NLL of N(mu, exp(ls)^2) (constants dropped)."""
    del key
    z = (batch[:, 0] - params["mu"]) / jnp.exp(params["ls"])
    return 0.5 * z**2 + params["ls"]


P0 = {"mu": jnp.zeros(()), "ls": jnp.zeros(())}


def _data(n=4096, seed=0):
    return 3.0 + 2.0 * jax.random.normal(jax.random.key(seed), (n, 1))


def test_fit_reaches_the_analytic_mle():
    """Without validation the optimum is the sample mean and std of all events. Adam
    with a cosine decay to 0 over 60 epochs converges to it; the remaining optimisation
    error (< 1e-2) is far below the statistical error of the estimate (2/64 = 0.03)."""
    x = _data()
    cfg = FitConfig(epochs=60, batch_size=256, learning_rate=0.05, val_fraction=0.0, **QUIET)
    res = fit(gaussian_nll, P0, x, key=jax.random.key(1), config=cfg)
    assert res.stop_reason == "completed"
    np.testing.assert_allclose(res.params["mu"], jnp.mean(x), atol=1e-2)
    np.testing.assert_allclose(jnp.exp(res.params["ls"]), jnp.std(x), rtol=1e-2)
    assert res.history["train_loss"].shape == (60,)


def test_weighted_loss_gives_weighted_mean():
    """Squared loss with weights: the optimum is the weighted mean, exactly."""
    x = jnp.concatenate([jnp.zeros((512, 1)), jnp.ones((512, 1))])
    w = jnp.concatenate([jnp.full(512, 1.0), jnp.full(512, 3.0)])  # weighted mean 0.75
    loss = lambda p, b, k: (b["x"][:, 0] - p) ** 2  # noqa: E731
    cfg = FitConfig(epochs=40, batch_size=128, learning_rate=0.05, val_fraction=0.0, **QUIET)
    res = fit(loss, jnp.zeros(()), {"x": x}, key=jax.random.key(0), weights=w, config=cfg)
    np.testing.assert_allclose(res.params, 0.75, atol=1e-2)


def test_negative_weights_background_subtraction():
    """Data = signal (at 2) + background (at -1), minus the same background with weight
    -1: the weighted mean is the signal's, 2."""
    sig = jnp.full((400, 1), 2.0)
    bkg = jnp.full((400, 1), -1.0)
    x = jnp.concatenate([sig, bkg, bkg])
    w = jnp.concatenate([jnp.ones(800), -jnp.ones(400)])
    loss = lambda p, b, k: (b[:, 0] - p) ** 2  # noqa: E731
    # Full batch, so the loss is the exact weighted objective; Adam moves ~lr per step,
    # so 200 steps at lr 0.1 under a cosine decay can travel ~10 >> 2.
    cfg = FitConfig(epochs=200, batch_size=1200, learning_rate=0.1, val_fraction=0.0, **QUIET)
    res = fit(loss, jnp.zeros(()), x, key=jax.random.key(0), weights=w, config=cfg)
    np.testing.assert_allclose(res.params, 2.0, atol=1e-2)


def test_early_stopping_restores_best_params():
    x = _data(2048)
    seen = []
    cfg = FitConfig(epochs=40, batch_size=64, learning_rate=0.3, schedule="constant",
                    patience=3, **QUIET)
    res = fit(gaussian_nll, P0, x, key=jax.random.key(2), config=cfg,
              callback=lambda e, info: seen.append(float(info["val_loss"])))
    val = res.history["val_loss"]
    best = int(res.history["best_epoch"])
    assert best == int(np.nanargmin(val))
    # Stopped `patience` epochs after the best one (or ran to the end).
    assert res.stop_reason == "early_stopping" and len(seen) == best + 1 + 3
    # The returned params give exactly the best validation loss: recompute it on the
    # same split (the engine's split is a permutation from the first subkey).
    k_split = jax.random.split(jax.random.key(2), 3)[0]
    perm = jax.random.permutation(k_split, 2048)
    xv = x[perm[: int(round(2048 * 0.2))]]
    np.testing.assert_allclose(jnp.mean(gaussian_nll(res.params, xv, None)), val[best],
                               rtol=1e-5)


def test_non_finite_loss_stops_and_keeps_last_good_params():
    """The loss log(5 - p) is NaN for p > 5. SGD with lr 1 steps p += 1/(5 - p): the
    steps grow as p approaches 5 until one jumps past it (after ~12 steps from 0)."""
    loss = lambda p, b, k: jnp.log(5.0 - p) + 0.0 * b[:, 0]  # noqa: E731
    cfg = FitConfig(epochs=50, batch_size=10, val_fraction=0.0, **QUIET)
    opt = optax.sgd(1.0)
    with pytest.warns(RuntimeWarning, match="non-finite at step"):
        res = fit(loss, jnp.zeros(()), jnp.zeros((100, 1)), key=jax.random.key(0),
                  config=cfg, optimizer=opt)
    assert res.stop_reason == "non_finite"
    assert int(res.non_finite_step) >= 0
    assert np.isfinite(float(res.params)) and float(res.params) < 5.0


def test_fit_ensemble_bootstrap_members_reach_their_weighted_mles():
    """Each member minimises its own Poisson-bootstrap-weighted NLL; the analytic optimum
    is that member's weighted mean and weighted std."""
    x = _data(2048, seed=3)
    k = 4
    w = poisson_bootstrap_weights(jax.random.key(4), k, x.shape[0])
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a] * k), P0)
    cfg = FitConfig(epochs=60, batch_size=256, learning_rate=0.05, val_fraction=0.0, **QUIET)
    res = fit_ensemble(gaussian_nll, params, x, key=jax.random.key(5), weights=w, config=cfg)
    for i in range(k):
        wi = w[i] / w[i].sum()
        mean = jnp.sum(wi * x[:, 0])
        std = jnp.sqrt(jnp.sum(wi * (x[:, 0] - mean) ** 2))
        np.testing.assert_allclose(res.params["mu"][i], mean, atol=1e-2)
        np.testing.assert_allclose(jnp.exp(res.params["ls"][i]), std, rtol=1e-2)
    # Bootstrap members differ from each other (by ~ the statistical error, 2/45).
    assert float(jnp.std(res.params["mu"])) > 1e-3
    assert res.history["train_loss"].shape == (60, k)


def test_epoch_compiles_once():
    traces = []

    def loss(p, b, k):
        traces.append(1)
        return gaussian_nll(p, b, k)

    for epochs in (2, 6):
        traces.clear()
        fit(loss, P0, _data(512), key=jax.random.key(0),
            config=FitConfig(epochs=epochs, batch_size=64, patience=None, **QUIET))
        count = len(traces)
        if epochs == 2:
            first = count
    assert count == first  # tracing does not grow with the number of epochs


def test_step_is_passed_to_losses_that_ask_for_it():
    seen = []

    def loss(p, b, k, step=None):
        seen.append(step is None)
        return gaussian_nll(p, b, k) * (1.0 if step is None else 1.0 + 0.0 * step)

    res = fit(loss, P0, _data(512), key=jax.random.key(0),
              config=FitConfig(epochs=2, batch_size=64, **QUIET))
    assert True in seen and False in seen  # traced for validation (None) and training
    assert np.isfinite(res.history["val_loss"]).all()
    assert num_train_steps(512, FitConfig(epochs=2, batch_size=64)) == 2 * (410 // 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=-1), "batch_size"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(schedule="linear"), "schedule"),
        (dict(patience=0), "patience"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FitConfig(**kwargs)


def test_bad_data_raises():
    cfg = FitConfig(epochs=1, batch_size=8, **QUIET)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="NaN"):
        fit(gaussian_nll, P0, jnp.full((64, 1), jnp.nan), key=key, config=cfg)
    with pytest.raises(ValueError, match="leading"):
        fit(lambda p, b, k: b["a"][:, 0], P0, {"a": jnp.zeros((64, 1)), "b": jnp.zeros((5,))},
            key=key, config=cfg)
    with pytest.raises(ValueError, match="per-example"):
        fit(lambda p, b, k: jnp.mean(b), P0, jnp.zeros((64, 1)), key=key, config=cfg)
    with pytest.raises(ValueError, match="larger than"):
        fit(gaussian_nll, P0, jnp.zeros((10, 1)), key=key,
            config=FitConfig(batch_size=64, **QUIET))
    with pytest.raises(ValueError, match="weights"):
        fit(gaussian_nll, P0, jnp.zeros((64, 1)), key=key, config=cfg, weights=jnp.ones(3))
    with pytest.raises(ValueError, match="positive mean"):
        fit(gaussian_nll, P0, jnp.zeros((64, 1)), key=key, config=cfg, weights=-jnp.ones(64))


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    x = _data(1024)
    cfg = FitConfig(epochs=8, batch_size=128, learning_rate=0.05, **QUIET)
    full = fit(gaussian_nll, P0, x, key=jax.random.key(7), config=cfg)

    class Killed(Exception):
        pass

    def kill_after_epoch_3(epoch, info):
        if epoch == 3:
            raise Killed

    ckpt = FitConfig(epochs=8, batch_size=128, learning_rate=0.05,
                     checkpoint_dir=str(tmp_path / "ckpt"), **QUIET)
    with pytest.raises(Killed):
        fit(gaussian_nll, P0, x, key=jax.random.key(7), config=ckpt, callback=kill_after_epoch_3)
    resumed = fit(gaussian_nll, P0, x, key=jax.random.key(7), config=ckpt)
    for name in ("mu", "ls"):
        np.testing.assert_array_equal(resumed.params[name], full.params[name])
    np.testing.assert_array_equal(resumed.history["val_loss"], full.history["val_loss"])
    # A different configuration must not silently resume from this directory.
    with pytest.raises(ValueError, match="different configuration"):
        fit(gaussian_nll, P0, x, key=jax.random.key(7),
            config=FitConfig(epochs=9, batch_size=128, checkpoint_dir=str(tmp_path / "ckpt"),
                             **QUIET))


SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    from jaxgen.train import FitConfig, fit

    def loss(p, b, k):
        h = jnp.tanh(b[:, :1] * p["w1"] + p["b1"])
        return (h @ p["w2"] - b[:, 1]) ** 2

    x = jax.random.normal(jax.random.key(0), (2048, 2))
    p0 = {"w1": jnp.linspace(-1, 1, 8)[None], "b1": jnp.zeros(8), "w2": jnp.ones(8) / 8}
    out = {}
    for dp in (False, True):
        cfg = FitConfig(epochs=3, batch_size=256, progress=False, data_parallel=dp)
        res = fit(loss, p0, x, key=jax.random.key(1), config=cfg)
        out[str(dp)] = {k: v.tolist() for k, v in res.params.items()}
    out["devices"] = jax.device_count()
    print(json.dumps(out))
    """
)


def test_data_parallel_matches_single_device():
    """4 host devices: sharded batches give the single-device result up to float32
    reduction-order differences (~1e-6 relative per step, ~1e-5 after 24 steps)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    for name in ("w1", "b1", "w2"):
        np.testing.assert_allclose(out["True"][name], out["False"][name], rtol=1e-4, atol=1e-5)
