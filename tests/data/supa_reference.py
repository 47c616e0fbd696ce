"""A plain, step-by-step, per-particle Python SUPA simulator: the independent reference.

Written from the rules of the released SUPA generator (arXiv:2202.05012,
``itsdaniele/SUPA`` ``main_discrete.py``) without networkx: every active particle of the
current layer draws p ~ U(0, 1) and stops (read out if the layer is a readout layer),
splits into two daughters one layer further, or passes straight on. Clear and slow; it
shares no code with ``jaxgen.data.showers`` except the configuration dataclass.
"""

from __future__ import annotations

import math

import numpy as np

from jaxgen.data.showers import ShowerConfig


def _center(v):
    """SUPA's ``center``: rows m1, m2, m3 with m3 = v/|v|, m2 ~ (0, -m3z, m3y)."""
    n = math.sqrt(v[0] ** 2 + v[1] ** 2 + v[2] ** 2)
    m3 = [v[0] / n, v[1] / n, v[2] / n]
    q = math.sqrt(m3[1] ** 2 + m3[2] ** 2)
    m2 = [0.0, -m3[2] / q, m3[1] / q]
    m1 = [
        m2[1] * m3[2] - m2[2] * m3[1],
        m2[2] * m3[0] - m2[0] * m3[2],
        m2[0] * m3[1] - m2[1] * m3[0],
    ]
    return [m1, m2, m3]


def _apply(rows, d, transpose):
    if transpose:
        return [sum(rows[i][j] * d[i] for i in range(3)) for j in range(3)]
    return [sum(rows[j][i] * d[i] for i in range(3)) for j in range(3)]


def split(x, y, px, py, energy, theta, delta, phi, dz, orientation="reference"):
    """One split; returns ``[(x1, y1, e1), (x2, y2, e2)]``."""
    t1, t2 = theta / 2 - delta, theta / 2 + delta
    e1 = energy * (t2 / theta)
    e2 = energy * (t1 / theta)
    rows = _center([x - px, y - py, dz])
    out = []
    for a, e in ((dz * math.tan(t1), e1), (-dz * math.tan(t2), e2)):
        d = [a * math.cos(phi), a * math.sin(phi), dz]
        r = _apply(rows, d, transpose=orientation == "exact")
        out.append((x + r[0] * dz / r[2], y + r[1] * dz / r[2], e))
    return out


def simulate_one(rng: np.random.Generator, config: ShowerConfig, energy: float | None = None):
    """One shower: ``(clouds, escaped, e0)``; clouds[k] is a list of ``(x, y, E)``."""
    p_stop, p_split = config.probabilities()
    readout = config.readout_index()
    lo, hi = config.energy_range
    if energy is not None:
        e0 = energy
    elif config.energy_spectrum == "uniform":
        e0 = rng.uniform(lo, hi)
    elif config.energy_spectrum == "log_uniform":
        e0 = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        e0 = config.energy
    slope = config.dz * math.tan(config.incidence[0])
    x0, y0 = config.entry_position
    root = (x0, y0, x0 - slope * math.cos(config.incidence[1]),
            y0 - slope * math.sin(config.incidence[1]), e0)
    layer_particles = [root]
    clouds = [[] for _ in range(config.n_layers)]
    for t in range(config.n_steps):
        nxt = []
        for x, y, px, py, e in layer_particles:
            p = rng.uniform()
            if p < p_stop[t]:
                if readout[t] >= 0:
                    clouds[readout[t]].append((x, y, e))
            elif p < p_stop[t] + p_split[t]:
                theta = rng.uniform(*config.theta_range)
                delta = rng.uniform(-config.asymmetry * theta, config.asymmetry * theta)
                phi = rng.uniform(0.0, 2.0 * math.pi)
                for xd, yd, ed in split(x, y, px, py, e, theta, delta, phi, config.dz,
                                        config.orientation):
                    nxt.append((xd, yd, x, y, ed))
            else:
                nxt.append((2 * x - px, 2 * y - py, x, y, e))
        layer_particles = nxt
    escaped = sum(p[4] for p in layer_particles)
    return clouds, escaped, e0


def simulate(seed: int, n: int, config: ShowerConfig | None = None):
    """``n`` showers: a dict of counts and layer energies ``(n, L)``, clouds, escaped, e0."""
    config = ShowerConfig() if config is None else config
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, config.n_layers), np.int64)
    energies = np.zeros((n, config.n_layers))
    clouds, escaped, e0 = [], np.zeros(n), np.zeros(n)
    for i in range(n):
        c, escaped[i], e0[i] = simulate_one(rng, config)
        clouds.append(c)
        for k, layer in enumerate(c):
            counts[i, k] = len(layer)
            energies[i, k] = sum(p[2] for p in layer)
    return {"counts": counts, "layer_energy": energies, "clouds": clouds, "escaped": escaped,
            "energy": e0}
