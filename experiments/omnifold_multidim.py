"""OmniFold on six correlated "jet substructure" observables, against per-observable IBU.

Paper: Andreassen, Komiske, Metodiev, Nachman, Thaler, "OmniFold: A Method to
Simultaneously Unfold All Observables", PRL 124 (2020) 182001, arXiv:1911.09107.

The paper unfolds six jet observables (mass m, constituent multiplicity M, width w,
tau21, ln rho, z_g) of Z+jet events simulated with Pythia ("synthetic") onto Herwig
("natural"), and reports the triangular discriminator x 1e3 between unfolded and true
histograms: MultiFold (OmniFold on the six observables) is best or comparable to IBU
on all six. This experiment uses a synthetic stand-in (no event generators here): the
six observables are built from three correlated latent variables, "natural" shifts and
rescales the latents, and the detector smears each observable with its own response
(mass scale and resolution, multiplicity loss, acceptance falling at low mass).

Claim checked: OmniFold moves every observable toward the truth (Delta below the
generation's) and its average Delta over the six is within ``max_ibu_ratio`` (1.2 at the
default preset, 1.5 at --quick) of per-observable IBU's with the same iterations and
bins. The statistical floor (an independent truth sample of the same size against the
truth, ~bins / 2n) is reported with it.

Command: ``python -m experiments.omnifold_multidim [--quick]``.
Expected (quick, 2 cores, ~60 s quiet, 190 s on a loaded machine): OmniFold's mean
Delta x 1e3 0.87 against IBU's 0.70 (ratio 1.24) and a floor of 0.48; with ``--seed=1``
0.95 against 0.62 (1.53, just outside 1.5: the quick ratio varies by ~0.2 with the seed).
At ``--n=100000`` (other fields default; 550 s loaded): 0.39 against 0.39 (ratio 1.02,
floor 0.13; before: 0.64 against 0.36). Default preset (n = 2e5, 500 s loaded): 0.28
against 0.25 (ratio 1.12, floor 0.06); OmniFold is better than IBU on width (0.29 vs
0.53) and z_g (0.13 vs 0.55), worse on the mass (0.55 vs 0.15), where it stays at
~10x the floor.

Cause of the former gap (issue 27; measured at --quick, n = 3e4, 3 iterations; single
runs vary by ~0.1): the step-1 classifier missed the detector-level marginals, mostly
the mass. Floors: an independent truth sample 0.47; the MC generation reweighted with
the exact latent-level weights 0.55; IBU 0.70; OmniFold 1.09 with ``ln m`` inputs. The
gap was neither the acceptance (without it: 1.10 and 1.21 after iterations 2 and 3
against IBU's 0.71 and 0.68), nor the step-2 regression (the pull weights read at
particle level gave 0.98-1.05, about as far from IBU), nor the iteration count (4 and 5
iterations: 1.37 and 1.20 against IBU's 0.75 and 0.83); a larger learning rate (3e-3)
gave 1.86. Step 1's closure (reweighted reconstructed MC against data) was off in the
mass: Delta 0.83-0.94 against a data-vs-data floor of 0.24, and the unfolded mass 1.5-2.2
against IBU's 0.44. The inputs were the cause: standardised ``ln m``, the skewed and
discrete observables (multiplicity, the clipped z_g) left the 3x50 ReLU networks with
badly scaled directions. A per-observable monotone map to Gaussian marginals
(``gaussianizer``: MC quantiles, merged ties) brings step 1's mass closure to 0.64-0.71
and the mean Delta to 0.92 (diagnostic run) and 0.87 (this preset, seed 0); 40 epochs
instead of 20 gave the same 0.92, so what remains at n = 3e4 is the classifiers'
statistical error, which falls with n (ratio to IBU 1.02 at n = 1e5). The mass remains
OmniFold's worst observable at --quick (1.18 against IBU's 0.44; 0.55 against 0.23 at
n = 1e5), while OmniFold beats IBU on width and z_g.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from jaxgen.classifiers import mlp_classifier
from jaxgen.methods import ibu as ibu_mod
from jaxgen.methods import omnifold as of
from jaxgen.metrics.histograms import triangular_discriminator
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig

OBSERVABLES = ("mass", "multiplicity", "width", "tau21", "ln_rho", "z_g")
RANGES = {
    "mass": (0, 120),
    "multiplicity": (0, 70),
    "width": (0, 0.5),
    "tau21": (0, 1),
    "ln_rho": (-12, -2),
    "z_g": (0.1, 0.5),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Six-observable example; network and training follow the Gaussian example."""

    seed: int = 0
    n: int = 200_000
    iterations: int = 4
    hidden: tuple[int, ...] = (50, 50, 50)
    epochs: int = 20
    batch_size: int = 10_000
    patience: int = 10
    bins: int = 30
    # The original code warm-starts each iteration from the previous networks. With early
    # stopping that over-corrects from the third iteration on here (at n = 1e5 the mass
    # tail falls 10% below IBU's), so each classifier starts afresh by default.
    warm_start: bool = False
    # Classifiers averaged per ratio (the paper's code averages an ensemble per iteration).
    # At --quick, 4 members gave mean Delta x1e3 1.31 against 1.22 for one (IBU 0.70) at
    # twice the runtime: the gap to IBU is a bias, not the classifiers' variance.
    members: int = 1
    learning_rate: float = 1e-3
    # Cosine decay of the learning rate: at --quick the best-validation epoch came within
    # the first 10 in every fit at constant 1e-3 (epochs 10 and 40 gave identical 1.22),
    # so the classifiers sat at the SGD noise floor; decaying it gave 1.09 (IBU 0.70).
    schedule: str = "cosine"
    # Goal of issue 27: OmniFold's mean Delta within this multiple of per-observable IBU's.
    max_ibu_ratio: float = 1.2

    def __post_init__(self):
        check_positive_fields(self, ("n", "iterations", "epochs", "batch_size", "patience", "bins",
                                     "members", "max_ibu_ratio"))


QUICK = {"n": 30_000, "iterations": 3, "epochs": 20, "batch_size": 1000, "max_ibu_ratio": 1.5}


def generate(key, n, natural):
    """Generator-level observables ``(n, 6)`` of the "synthetic" or "natural" sample."""
    k = jax.random.split(key, 6)
    cov = jnp.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    z = jax.random.normal(k[0], (n, 3)) @ jnp.linalg.cholesky(cov).T
    if natural:
        z = jnp.array([0.3, -0.25, 0.2]) + 0.9 * z
    mass = 12.0 + 18.0 * jnp.exp(0.45 * z[:, 0])
    mult = jnp.round(
        jnp.maximum(2.0, 24 + 7 * z[:, 1] + 0.15 * (mass - 30) + 2 * jax.random.normal(k[1], (n,)))
    )
    width = 0.45 * jax.nn.sigmoid(
        -1.2 + 0.5 * z[:, 0] + 0.6 * z[:, 1] + 0.3 * jax.random.normal(k[2], (n,))
    )
    tau21 = jax.nn.sigmoid(
        0.3 + 0.7 * z[:, 2] - 0.3 * z[:, 0] + 0.3 * jax.random.normal(k[3], (n,))
    )
    groom = jax.nn.sigmoid(1.0 + 0.8 * z[:, 2] + 0.5 * jax.random.normal(k[4], (n,)))
    ln_rho = 2 * jnp.log(mass * groom / 500.0)
    z_g = 0.1 + 0.4 * jax.nn.sigmoid(
        -1.0 + 0.8 * z[:, 2] - 0.4 * z[:, 1] + 0.6 * jax.random.normal(k[5], (n,))
    )
    return jnp.stack([mass, mult, width, tau21, ln_rho, z_g], -1)


def detector(key, gen):
    """Detector response: per-observable smearing and a mass-dependent acceptance."""
    n = gen.shape[0]
    k = jax.random.split(key, 8)
    mass = gen[:, 0] * (0.95 + 0.06 * jax.random.normal(k[0], (n,))) + 1.5 * jax.random.normal(
        k[1], (n,)
    )
    mult = jnp.round(
        jnp.maximum(
            1.0, 0.85 * gen[:, 1] + 0.5 * jnp.sqrt(gen[:, 1]) * jax.random.normal(k[2], (n,))
        )
    )
    width = gen[:, 2] + 0.02 * jax.random.normal(k[3], (n,))
    tau21 = gen[:, 3] + 0.06 * jax.random.normal(k[4], (n,))
    ln_rho = gen[:, 4] + 0.35 * jax.random.normal(k[5], (n,))
    z_g = jnp.clip(gen[:, 5] + 0.03 * jax.random.normal(k[6], (n,)), 0.1, 0.5)
    sim = jnp.stack([mass, mult, width, tau21, ln_rho, z_g], -1)
    accept = jax.random.uniform(k[7], (n,)) < jax.nn.sigmoid((gen[:, 0] - 16.0) / 3.0)
    return sim, accept


def gaussianizer(reference: jax.Array, levels: int = 400):
    """A per-observable monotone map sending ``reference``'s marginals to N(0, 1).

    Piecewise-linear between the reference's quantiles at ``1/levels, ...`` (repeated
    quantiles of discrete observables such as the multiplicity merged), extended
    linearly beyond them and clipped to [-5, 5]. Any invertible per-observable map
    leaves the learned weights' targets unchanged (ratios are evaluated at the same
    events); this one gives the classifiers well-scaled inputs without tails or edges.

    Returns:
      ``apply(events (n, d)) -> (n, d)``.
    """
    ref = np.asarray(reference, np.float64)
    u = np.arange(1, levels) / levels
    z_all = np.sqrt(2.0) * np.asarray(jax.scipy.special.erfinv(2 * u - 1), np.float64)
    knots = []
    for j in range(ref.shape[1]):
        q, first = np.unique(np.quantile(ref[:, j], u), return_index=True)
        z = z_all[first]
        if q.size < 2:  # a constant observable: leave it alone
            knots.append(None)
            continue
        slopes = ((z[1] - z[0]) / (q[1] - q[0]), (z[-1] - z[-2]) / (q[-1] - q[-2]))
        knots.append((jnp.asarray(q, jnp.float32), jnp.asarray(z, jnp.float32), slopes))

    def apply(events: jax.Array) -> jax.Array:
        cols = []
        for j, kn in enumerate(knots):
            x = events[:, j]
            if kn is None:
                cols.append(x)
                continue
            q, z, (s0, s1) = kn
            y = jnp.interp(x, q, z)
            y = jnp.where(x < q[0], z[0] + s0 * (x - q[0]), y)
            y = jnp.where(x > q[-1], z[-1] + s1 * (x - q[-1]), y)
            cols.append(jnp.clip(y, -5.0, 5.0))
        return jnp.stack(cols, -1)

    return apply


def run(config: Config, workdir=None) -> dict:
    """Unfolds the six observables with OmniFold and per-observable IBU."""
    k = jax.random.split(jax.random.PRNGKey(config.seed), 5)
    gen = generate(k[0], config.n, natural=False)
    sim, pass_reco = detector(k[1], gen)
    truth = generate(k[2], config.n, natural=True)
    data_all, data_pass = detector(k[3], truth)
    data = data_all[np.asarray(data_pass)]
    sim = jnp.where(pass_reco[:, None], sim, 0.0)
    fit_cfg = FitConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        schedule=config.schedule,
        clip_norm=None,
        patience=config.patience,
        progress=False,
    )
    est = of.classifier_ratio(
        model=mlp_classifier(config.hidden),
        config=fit_cfg,
        warm_start=config.warm_start,
        members=config.members,
    )
    # The classifiers see each observable through a monotone map Gaussianising its MC
    # marginal (fitted on the MC generation at particle level, on the reconstructed MC at
    # detector level; data go through the detector-level map).
    to_gen = gaussianizer(gen)
    to_reco = gaussianizer(sim[np.asarray(pass_reco)])
    res = of.omnifold(
        k[4],
        gen=to_gen(gen),
        sim=to_reco(sim),
        data=to_reco(data),
        pass_reco=pass_reco,
        n_iterations=config.iterations,
        step1=est,
        step2=est,
    )
    nu = np.asarray(res.push_weights[-1, 0])
    # Statistical floor: an independent "natural" truth sample of the same size against
    # the truth (~ bins / 2n for Delta); neither method can be expected to beat it.
    truth_b = generate(jax.random.fold_in(jax.random.PRNGKey(config.seed), 1), config.n, True)
    table = {}
    hists = {}
    for j, name in enumerate(OBSERVABLES):
        edges = np.linspace(*RANGES[name], config.bins + 1)
        if name == "multiplicity":
            edges = np.arange(RANGES[name][0], RANGES[name][1] + 1, 2) - 0.5
        nb = edges.size - 1
        g = np.asarray(gen[:, j])
        t_h = np.histogram(np.asarray(truth[:, j]), edges)[0].astype(float)
        gen_h = np.histogram(g, edges)[0].astype(float)
        of_h = np.histogram(g, edges, weights=nu)[0]
        gb = np.clip(np.digitize(g, edges) - 1, 0, nb - 1)
        rb = np.clip(np.digitize(np.asarray(sim[:, j]), edges) - 1, 0, nb - 1)
        resp, eff, mc_truth = ibu_mod.response_matrix(gb, rb, nb, nb, pass_reco=pass_reco)
        d_h = np.histogram(np.asarray(data[:, j]), edges)[0].astype(float)
        prior = np.asarray(mc_truth) / float(np.sum(mc_truth))
        ibu_h = np.asarray(
            ibu_mod.ibu(
                d_h,
                resp,
                efficiencies=eff,
                prior=prior,
                max_iter=config.iterations,
                ts_stopping=None,
            ).unfolded
        )
        t2_h = np.histogram(np.asarray(truth_b[:, j]), edges)[0].astype(float)
        table[name] = {
            "floor": 1e3 * float(triangular_discriminator(t2_h, t_h)),
            "generation": 1e3 * float(triangular_discriminator(gen_h, t_h)),
            "ibu": 1e3 * float(triangular_discriminator(np.clip(ibu_h, 0, None), t_h)),
            "omnifold": 1e3 * float(triangular_discriminator(of_h, t_h)),
        }
        hists[name] = (edges, t_h, gen_h, ibu_h, of_h)
    d_of = np.array([table[n]["omnifold"] for n in OBSERVABLES])
    d_gen = np.array([table[n]["generation"] for n in OBSERVABLES])
    d_ibu = np.array([table[n]["ibu"] for n in OBSERVABLES])
    d_floor = np.array([table[n]["floor"] for n in OBSERVABLES])
    r = config.max_ibu_ratio
    checks = [
        check(
            "OmniFold Delta x1e3 below the generation's for all six observables",
            f"{int(np.sum(d_of < d_gen))}/6",
            bool(np.all(d_of < d_gen)),
        ),
        check(
            f"OmniFold mean Delta x1e3 over six observables <= {r} x per-observable IBU's",
            f"{d_of.mean():.2f} vs {d_ibu.mean():.2f} (floor {d_floor.mean():.2f})",
            bool(d_of.mean() <= r * d_ibu.mean()),
            paper="MultiFold best or comparable to IBU on all six observables",
            ratio_to_ibu=float(d_of.mean() / d_ibu.mean()),
            ratio_to_floor=float(d_of.mean() / d_floor.mean()),
        ),
    ]
    if workdir is not None:
        _plot(workdir, hists, table)
    return {
        "triangular_x1e3": table,
        "acceptance_mc": float(jnp.mean(pass_reco)),
        "n_data": int(data.shape[0]),
        "checks": checks,
    }


def _plot(workdir, hists, table):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, name in zip(axes.ravel(), OBSERVABLES, strict=True):
        edges, t_h, gen_h, ibu_h, of_h = hists[name]
        c = 0.5 * (edges[1:] + edges[:-1])
        norm = lambda h: h / h.sum()  # noqa: E731
        ax.fill_between(c, norm(t_h), step="mid", alpha=0.3, label="truth (natural)")
        ax.step(c, norm(gen_h), where="mid", color="gray", label="generation (synthetic)")
        ax.plot(c, norm(ibu_h), "s", ms=3, label=f"IBU ({table[name]['ibu']:.1f})")
        ax.plot(c, norm(of_h), "o", ms=3, label=f"OmniFold ({table[name]['omnifold']:.1f})")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, workdir / "omnifold_multidim.png", dpi=100)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
