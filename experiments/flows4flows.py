"""Flows for Flows (arXiv:2211.02487): transport between 2D toys, plain and conditional.

Claim: a flow whose base is a frozen flow of the target density, trained by maximum
likelihood, maps one arbitrary distribution onto another; a distance penalty makes the
map OT-like (shorter moves), unlike the encode/decode baseline through the Gaussian
latent; the conditional variant (context = target minus input condition, one shared
conditional base flow) moves data between conditions.

Unconditional: base flows on ``left_toy`` and ``right_toy``; top flows with no penalty and
with an annealed L2 penalty (direction "alternate"). Conditional: one conditional base
flow on the rotated checkerboard (condition = angle/45), a Delta top flow trained to move
events to randomly drawn target conditions, evaluated moving 0 deg -> ``eval_degrees``.

Checks:
  * transported left events match the right density: sliced-Wasserstein distance to
    right test events below ``max_sw_ratio`` (25%; 50% for the seconds-long quick
    preset) of the untransported distance;
  * the paper's figure: for both F4F variants, SW(T(left), right) below
    ``max_sw_floor_multiple`` (3) times the right-vs-right floor (NOT CHECKED at --quick);
  * the L2 penalty shortens the mean transport distance;
  * the penalised F4F map moves events less than the encode/decode baseline;
  * the conditional transfer reaches the target condition (SW below 50% of the
    untransported distance).

Command::

    python -m experiments.flows4flows          # 1e5 events per side (24 min on 2 shared cores)
    python -m experiments.flows4flows --quick  # ~1 min

The quick preset shows the mechanism (all checks pass, with the looser SW threshold),
but its seconds-long training leaves the four-circles -> checkerboard transport visibly
blurred in transport.png; the default preset is the reproduction of the paper's figure.

Writes metrics.json and transport.png.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from experiments import check
from experiments import check_positive_fields
from experiments import main
from experiments import not_checked
from jaxgen.data import toys
from jaxgen.flows import coupling_flow
from jaxgen.flows import fit_flow
from jaxgen.methods import flows4flows as f4f
from jaxgen.metrics.distances import sliced_wasserstein
from jaxgen.plot import save_figure
from jaxgen.train import FitConfig


@dataclasses.dataclass(frozen=True)
class Config:
    """Flows-for-Flows toy transfers (paper: 1e6 events, 4 stacks x 2 blocks x 128)."""

    left_toy: str = "four_circles"
    right_toy: str = "checkerboard"
    n_train: int = 100_000
    n_test: int = 20_000
    base_layers: int = 8
    top_layers: int = 4  # even: the output coordinate order equals the input order
    hidden: tuple[int, ...] = (128, 128)
    num_bins: int = 8
    tail_bound: float = 5.0
    base_epochs: int = 32
    # Top flows: the paper trains 12 epochs at batch 128 on 1e6 events (~94k steps); at
    # 1e5 events that schedule (8.4k steps, lr 1e-3) left them under-trained (left NLL under
    # the top flow 3.26-3.37 against the left base flow's 2.90, SW 0.29-0.45). With the
    # same bases, 24 epochs at batch 512 and lr 3e-3 (4.2k steps, cheaper on CPU) reached
    # SW 0.20, NLL 3.12 (2.90 is the target); doubling the top layers (0.35), forward-only
    # (1.43), inverse-only (0.55) and "iterate" (0.40) training were worse.
    top_epochs: int = 24
    batch_size: int = 128
    learning_rate: float = 1e-3
    top_batch_size: int = 512
    top_learning_rate: float = 3e-3
    penalty_weight: float = 1.0
    eval_degrees: float = 40.0
    max_sw_ratio: float = 0.25
    # The paper's figure: transported events indistinguishable from right events. Checked
    # as SW(T(left), right) < max_sw_floor_multiple * SW(right, right) for both variants;
    # None: not checked (the quick preset cannot reach it). Why 3: the right base flow
    # itself sits at ~1.4x the floor (encode/decode SW 0.028-0.030 against 0.022 at n_test
    # 2e4), and a perfect top flow reproduces the right base flow, not the right data; 3x
    # leaves the top flow an error about as large as the base flow's own.
    max_sw_floor_multiple: float | None = 3.0
    seed: int = 42

    def __post_init__(self):
        for name in ("left_toy", "right_toy"):
            if getattr(self, name) not in toys.TOYS_2D:
                raise ValueError(f"`{name}` must be one of {sorted(toys.TOYS_2D)}.")
        check_positive_fields(self, ("n_train", "n_test", "base_layers", "top_layers",
                                     "base_epochs", "top_epochs", "batch_size", "num_bins",
                                     "top_batch_size", "top_learning_rate"))
        if self.max_sw_floor_multiple is not None:
            check_positive_fields(self, ("max_sw_floor_multiple",))
        if self.top_layers % 2:
            raise ValueError("`top_layers` must be even so the map keeps coordinate order.")
        if not 0 <= self.eval_degrees < 45:
            raise ValueError(f"`eval_degrees` must be in [0, 45); got {self.eval_degrees}.")


QUICK = dict(
    n_train=12_000,
    n_test=5_000,
    base_layers=4,
    hidden=(64, 64),
    # 12 / 30 epochs: at 6 / 15 the transport's SW ratio ranged 0.28-0.50 between runs
    # that differed only in float rounding (0.5006 once); at 12 / 30 it is 0.23-0.40 over
    # seeds 42, 1, 2, 3, for 7 s more.
    base_epochs=12,
    top_epochs=30,
    batch_size=256,
    learning_rate=3e-3,
    top_batch_size=256,
    top_learning_rate=3e-3,
    max_sw_ratio=0.5,
    max_sw_floor_multiple=None,  # seconds-long training: the transport stays blurred
)


def _fit_cfg(config: Config, epochs: int, top: bool = False) -> FitConfig:
    return FitConfig(epochs=epochs,
                     batch_size=config.top_batch_size if top else config.batch_size,
                     learning_rate=config.top_learning_rate if top else config.learning_rate,
                     val_fraction=0.1, patience=None, progress=False)


def _cost(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.mean(jnp.linalg.norm(a - b, axis=-1)))


def run(config: Config, workdir=None) -> dict:
    """Trains base flows and top flows; returns distances, costs and checks."""
    keys = iter(jax.random.split(jax.random.key(config.seed), 32))
    flow_kw = dict(num_bins=config.num_bins, tail_bound=config.tail_bound,
                   hidden=config.hidden)
    sample = {n: jax.jit(toys.TOYS_2D[n], static_argnums=1)
              for n in (config.left_toy, config.right_toy)}
    xl, xr = (sample[n](next(keys), config.n_train) for n in (config.left_toy, config.right_toy))
    tl, tr = (sample[n](next(keys), config.n_test) for n in (config.left_toy, config.right_toy))

    # Step 1: base flows by maximum likelihood, then frozen.
    bases, base_nll = {}, {}
    for side, x, t in (("left", xl, tl), ("right", xr, tr)):
        flow, p = coupling_flow(next(keys), dim=2, num_layers=config.base_layers, **flow_kw)
        p = fit_flow(next(keys), flow, p, x, config=_fit_cfg(config, config.base_epochs)).params
        bases[side] = flow.distribution(p)
        base_nll[side] = float(-jnp.mean(jax.jit(flow.log_prob)(p, t)))

    # Step 2: top flows with the frozen right flow as base, with and without penalty.
    out = {}
    for label, penalty in (("free", None), ("l2", "l2")):
        top, p = coupling_flow(next(keys), dim=2, num_layers=config.top_layers,
                               base=bases["right"], **flow_kw)
        res = f4f.fit_transport(
            next(keys), top, p, xl, xr, bases["left"],
            transport=f4f.TransportConfig(direction="alternate", penalty=penalty,
                                          penalty_weight=config.penalty_weight),
            config=_fit_cfg(config, config.top_epochs, top=True))
        moved = jax.jit(lambda q, v, top=top: f4f.transport(top, q, v))(res.params, tl)
        out[label] = {
            "moved": moved,
            "sw_to_right": float(sliced_wasserstein(next(keys), moved, tr)),
            "transport_cost": _cost(moved, tl),
            "left_nll_under_top": float(-jnp.mean(jax.jit(top.log_prob)(res.params, tl))),
        }
    baseline = f4f.encode_decode(bases["left"], bases["right"], tl)
    sw_before = float(sliced_wasserstein(next(keys), tl, tr))
    sw_floor = float(sliced_wasserstein(next(keys), tr, sample[config.right_toy](
        next(keys), config.n_test)))

    cond = _conditional(config, keys, flow_kw)

    metrics = {
        "base_test_nll": base_nll,
        "sliced_wasserstein": {"before": sw_before, "right_vs_right": sw_floor,
                               "f4f": out["free"]["sw_to_right"],
                               "f4f_l2": out["l2"]["sw_to_right"],
                               "encode_decode": float(sliced_wasserstein(next(keys), baseline,
                                                                         tr))},
        "transport_cost": {"f4f": out["free"]["transport_cost"],
                           "f4f_l2": out["l2"]["transport_cost"],
                           "encode_decode": _cost(baseline, tl)},
        "left_nll_under_top_flow": {k: out[k]["left_nll_under_top"] for k in out},
        "conditional": {k: v for k, v in cond.items() if k != "panels"},
    }
    best_sw = min(out["free"]["sw_to_right"], out["l2"]["sw_to_right"])
    metrics["checks"] = [
        check(f"F4F maps left onto right: SW(T(left), right) < {config.max_sw_ratio} "
              "SW(left, right)", best_sw / sw_before, best_sw < config.max_sw_ratio * sw_before),
        _floor_check(config, out, sw_floor),
        check("L2 penalty shortens the transport (cost with / without)",
              out["l2"]["transport_cost"] / out["free"]["transport_cost"],
              out["l2"]["transport_cost"] < out["free"]["transport_cost"]),
        check("penalised F4F moves less than encode/decode (cost ratio)",
              out["l2"]["transport_cost"] / _cost(baseline, tl),
              out["l2"]["transport_cost"] < _cost(baseline, tl)),
        check("conditional Delta-F4F reaches the target angle: SW ratio < 0.5",
              cond["sw_after"] / cond["sw_before"], cond["sw_after"] < 0.5 * cond["sw_before"]),
    ]
    if workdir is not None:
        _plot(tl, tr, out, baseline, cond["panels"], workdir / "transport.png")
    return metrics


def _floor_check(config: Config, out: dict, sw_floor: float) -> dict:
    worst = max(out["free"]["sw_to_right"], out["l2"]["sw_to_right"])
    k = config.max_sw_floor_multiple
    claim = (f"F4F and F4F + L2 reproduce the right density: SW(T(left), right) < "
             f"{k if k is not None else 3} SW(right, right) (worst variant / floor)")
    if k is None:
        return not_checked(claim, "seconds-long training of the quick preset; the default "
                           "preset checks it", measured=worst / sw_floor)
    return check(claim, worst / sw_floor, worst < k * sw_floor)


def _conditional(config: Config, keys, flow_kw) -> dict:
    """One conditional base p(x|c) on rotated checkerboards; a Delta top flow."""
    x, c = toys.rotated(next(keys), config.n_train)
    flow, p = coupling_flow(next(keys), dim=2, context_dim=1, num_layers=config.base_layers,
                            **flow_kw)
    p = fit_flow(next(keys), flow, p, x, context=c,
                 config=_fit_cfg(config, config.base_epochs)).params
    base = flow.distribution(p)
    top, tp = coupling_flow(next(keys), dim=2, context_dim=1, num_layers=config.top_layers,
                            base=base, **flow_kw)
    c_tgt = c[jax.random.permutation(next(keys), c.shape[0])]  # random target conditions
    res = f4f.fit_transport(next(keys), top, tp, x, x, base,
                            transport=f4f.TransportConfig(direction="forward"),
                            config=_fit_cfg(config, config.top_epochs, top=True),
                            left_context=c, right_context=c_tgt,
                            top_context_fn=f4f.delta_context)
    n = config.n_test
    x0, c0 = toys.rotated(next(keys), n, degrees=0.0)
    xt, ct = toys.rotated(next(keys), n, degrees=config.eval_degrees)
    moved = f4f.transport(top, res.params, x0, f4f.delta_context(c0, ct))
    return {
        "eval_degrees": config.eval_degrees,
        "sw_before": float(sliced_wasserstein(next(keys), x0, xt)),
        "sw_after": float(sliced_wasserstein(next(keys), moved, xt)),
        "transport_cost": _cost(moved, x0),
        "panels": (np.asarray(x0), np.asarray(moved), np.asarray(xt)),
    }


def _plot(tl, tr, out, baseline, cond_panels, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("left", tl), ("right", tr), ("F4F", out["free"]["moved"]),
              ("F4F + L2", out["l2"]["moved"]), ("encode/decode", baseline),
              ("cond: 0 deg", cond_panels[0]), ("cond: moved", cond_panels[1]),
              ("cond: target", cond_panels[2])]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    for ax, (title, pts) in zip(axes.ravel(), panels, strict=True):
        pts = np.asarray(pts)
        ax.hist2d(pts[:, 0], pts[:, 1], bins=80, range=[[-5, 5], [-5, 5]], cmap="viridis")
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


if __name__ == "__main__":
    raise SystemExit(main(__name__))
