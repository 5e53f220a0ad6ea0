"""Population-to-population datasets for meta flow matching, returned as ``PopulationBatch``.

Two families, both deterministic by ``seed`` and paired point by point (``target[b, i]`` is
where ``source[b, i]`` goes):

- :func:`letters` — the synthetic benchmark of Atanackovic et al., "Meta Flow Matching"
  (ICLR 2025, Sec. 5.1): each population is the point cloud of a capital letter, randomly
  rotated and jittered; the source is the target plus isotropic Gaussian noise, so the task
  is to *denoise* a population whose shape the model has to infer from the noisy source
  itself. Split by letter into train / val / test. Deviation: the paper rasterises Arial with
  PIL; we sample uniformly inside the vector outline of DejaVu Sans (ships with matplotlib)
  with :class:`matplotlib.textpath.TextPath`, which needs no font file and no rasteriser.
- :func:`aggregation_populations` — a physical system whose evolution depends on the whole
  population: N particles under the mean-field aggregation/repulsion dynamics
  ``dx_i/dt = -(1/N) sum_j grad W(x_i - x_j)``, ``W(r) = |r|^2/2 - log|r|`` (attractive at long
  range, Newtonian repulsion at short range; its equilibrium in 2-D is the uniform disk of
  radius 1, Fetecau, Huang & Kolokolnikov, Nonlinearity 24, 2011), evolved for a fixed time
  from many random Gaussian-mixture initial populations. Because each particle's velocity
  depends on all others, the map ``source -> target`` differs between populations — exactly
  the setting where conditioning on the population (MFM) should beat plain flow matching.

Both accept ``draw = d >= 1``: an independent population of the same letter and rotation / the
same initial Gaussian mixture (fresh points). Its target is a second sample of the true target
distribution — the "oracle" prediction that sets the finite-sample floor of W1/W2/MMD/energy.
"""

from __future__ import annotations

import functools
import string

import numpy as np
import torch
from torch import Tensor

from sciflow.data.batches import PopulationBatch
from sciflow.solvers.ode import RK4, odeint

ALPHABET = string.ascii_uppercase
LETTER_HALF_EXTENT = 3.0  # letters are scaled so their longer side spans [-3, 3] (as the paper)
_SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- letters


@functools.lru_cache(maxsize=64)
def letter_polygons(char: str, curve_points: int = 16) -> tuple[np.ndarray, ...]:
    """Outline polygons of ``char`` in DejaVu Sans, centred and scaled to ``[-3, 3]``.

    Quadratic/cubic Bezier pieces of the glyph outline are sampled at ``curve_points`` points.
    Inside = odd number of enclosing polygons (even-odd rule: holes of A, B, D, ... are holes).
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath

    if len(char) != 1 or char not in ALPHABET:
        raise ValueError(f"letter must be one capital A-Z, got {char!r}")
    path = TextPath((0.0, 0.0), char, size=1.0, prop=FontProperties(family="DejaVu Sans"))
    polys: list[list[np.ndarray]] = []
    s = np.linspace(0.0, 1.0, curve_points)[1:]
    for seg, code in path.iter_bezier():
        if code == Path.MOVETO:
            polys.append([seg.control_points[-1:]])
        elif code == Path.LINETO:
            polys[-1].append(seg.control_points[-1:])
        elif code in (Path.CURVE3, Path.CURVE4):
            polys[-1].append(seg(s))
        # CLOSEPOLY adds nothing: polygons are closed implicitly
    out = [np.concatenate(p, axis=0) for p in polys if sum(len(q) for q in p) >= 3]
    allpts = np.concatenate(out)
    lo, hi = allpts.min(0), allpts.max(0)
    centre, scale = (lo + hi) / 2, 2 * LETTER_HALF_EXTENT / (hi - lo).max()
    return tuple((p - centre) * scale for p in out)


def sample_letter(char: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform inside the glyph of ``char`` (rejection sampling from its box)."""
    from matplotlib.path import Path

    polys = letter_polygons(char)
    paths = [Path(p) for p in polys]
    allpts = np.concatenate(polys)
    lo, hi = allpts.min(0), allpts.max(0)
    out: list[np.ndarray] = []
    got = 0
    while got < n:
        cand = lo + (hi - lo) * rng.random((max(2 * (n - got), 64), 2))
        inside = np.zeros(len(cand), dtype=bool)
        for p in paths:
            inside ^= p.contains_points(cand)
        out.append(cand[inside])
        got += int(inside.sum())
    return np.concatenate(out)[:n]


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def letter_population(char: str, rotation_index: int, *, n_points: int, noise_scale: float,
                      source_noise_scale: float, seed: int, draw: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One (source, target) pair of ``(n_points, 2)`` arrays for ``char``.

    target = R(theta) (glyph sample + noise_scale * eps), theta ~ U[0, 2 pi);
    source = target + source_noise_scale * eps'. The random stream depends only on
    ``(seed, char, rotation_index)``, so a population does not change when the split changes.

    ``draw = d >= 1`` gives an independent population of the *same* letter and rotation
    (same theta, fresh points and noise from the stream ``(seed, char, rotation_index, d)``):
    its target is a second sample of the true target distribution, the "oracle" prediction
    whose distance to the target is the finite-sample floor of any metric.
    """
    if draw < 0:
        raise ValueError(f"draw must be >= 0, got {draw}")
    rng = np.random.default_rng([seed, ord(char), rotation_index])
    theta = 2 * np.pi * rng.random()
    if draw:
        rng = np.random.default_rng([seed, ord(char), rotation_index, draw])
    pts = sample_letter(char, n_points, rng)
    target = (pts + noise_scale * rng.standard_normal(pts.shape)) @ _rotation(theta).T
    source = target + source_noise_scale * rng.standard_normal(target.shape)
    return source, target


def letter_split(val_letters: tuple[str, ...] = ("X",),
                 test_letters: tuple[str, ...] = ("Y",)) -> dict[str, tuple[str, ...]]:
    """Letters per split: val/test as given, train = the rest of A-Z (disjoint by letter)."""
    held = set(val_letters) | set(test_letters)
    if set(val_letters) & set(test_letters):
        raise ValueError(f"val and test letters overlap: {sorted(set(val_letters) & set(test_letters))}")
    bad = [c for c in held if c not in ALPHABET]
    if bad:
        raise ValueError(f"letters must be capitals A-Z, got {bad}")
    return {"train": tuple(c for c in ALPHABET if c not in held),
            "val": tuple(val_letters), "test": tuple(test_letters)}


def letters(split: str = "train", *, n_points: int = 700, n_rotations: int = 10,
            noise_scale: float = 0.05, source_noise_scale: float = 0.5,
            val_letters: tuple[str, ...] = ("X",), test_letters: tuple[str, ...] = ("Y",),
            seed: int = 0, draw: int = 0, dtype: torch.dtype = torch.float32) -> PopulationBatch:
    """The Letters populations of one split as a ``PopulationBatch``.

    Defaults follow the paper's official configuration (700 points, 10 rotations per letter,
    jitter 0.05, source noise 0.5, X held out for validation and Y for test).

    Returns: source, target ``(n_letters * n_rotations, n_points, 2)``; ``population_id``
    ``(batch,)`` a global id ``ALPHABET.index(char) * n_rotations + r``, unique across splits
    (the one-hot CGFM baseline indexes its table with it; held-out letters get ids it never
    trained on); ``condition`` None. ``draw >= 1``: independent populations of the same letters
    and rotations (see :func:`letter_population`; ``letters(..., draw=1).target`` is the oracle).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if n_points < 1 or n_rotations < 1:
        raise ValueError(f"n_points and n_rotations must be >= 1, got {n_points}, {n_rotations}")
    chars = letter_split(tuple(val_letters), tuple(test_letters))[split]
    src, tgt, ids = [], [], []
    for c in chars:
        for r in range(n_rotations):
            s, t = letter_population(c, r, n_points=n_points, noise_scale=noise_scale,
                                     source_noise_scale=source_noise_scale, seed=seed, draw=draw)
            src.append(s)
            tgt.append(t)
            ids.append(ALPHABET.index(c) * n_rotations + r)
    return PopulationBatch(source=torch.as_tensor(np.stack(src), dtype=dtype),
                           target=torch.as_tensor(np.stack(tgt), dtype=dtype),
                           population_id=torch.as_tensor(ids, dtype=torch.long))


def num_letter_populations(n_rotations: int = 10) -> int:
    """Size of the global population-id space of :func:`letters`."""
    return len(ALPHABET) * n_rotations


# ------------------------------------------------------- aggregation / repulsion particles


def aggregation_velocity(x: Tensor, softening: float = 0.05) -> Tensor:
    """Mean-field velocity ``-(1/N) sum_j grad W(x_i - x_j)``, ``W(r) = |r|^2/2 - log|r|``.

    ``grad W(r) = r - r / (|r|^2 + softening^2)`` (the log singularity is softened).
    ``x: (*batch, N, dim)`` -> same shape; O(N^2) per population, batched.
    """
    # sum_j (x_i - x_j) w_ij = x_i sum_j w_ij - (W x)_i: one (N, N) weight matrix and a matmul
    # instead of an (N, N, dim) difference tensor.
    n = x.shape[-2]
    sq = (x * x).sum(-1)
    r2 = (sq[..., :, None] + sq[..., None, :] - 2 * x @ x.transpose(-1, -2)).clamp_min(0.0)
    w = 1.0 / (r2 + softening**2)
    attraction = x - x.mean(dim=-2, keepdim=True)
    repulsion = (x * w.sum(-1, keepdim=True) - w @ x) / n
    return repulsion - attraction


def _gaussian_mixture(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Parameters of 1-3 anisotropic Gaussian blobs: weights, centres in [-2, 2]^dim, rotations,
    standard deviations in [0.15, 0.7]."""
    m = int(rng.integers(1, 4))
    weights = rng.dirichlet(np.full(m, 2.0))
    means = rng.uniform(-2.0, 2.0, size=(m, dim))
    rots = np.stack([np.linalg.qr(rng.standard_normal((dim, dim)))[0] for _ in range(m)])
    stds = rng.uniform(0.15, 0.7, size=(m, dim))
    return weights, means, rots, stds


def _sample_mixture(params: tuple[np.ndarray, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    weights, means, rots, stds = params
    comp = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1])) * stds[comp]
    return means[comp] + np.einsum("nij,nj->ni", rots[comp], z)


def evolve_aggregation(x0: Tensor, horizon: float, *, softening: float = 0.05,
                       steps: int = 100) -> Tensor:
    """Integrate the aggregation/repulsion system from ``x0 (*batch, N, dim)`` to ``horizon``
    with ``steps`` classical RK4 steps (:func:`sciflow.solvers.ode.odeint`)."""
    t = torch.tensor([0.0, horizon], dtype=x0.dtype, device=x0.device)
    ys = odeint(lambda _t, y: aggregation_velocity(y, softening), x0, t, solver=RK4(),
                dt=horizon / steps * (1 + 1e-9))
    return ys[-1]


def aggregation_populations(split: str = "train", *, n_populations: int = 64, n_points: int = 256,
                            dim: int = 2, horizon: float = 1.0, softening: float = 0.05,
                            steps: int = 100, seed: int = 0, id_offset: int = 0, draw: int = 0,
                            dtype: torch.dtype = torch.float32) -> PopulationBatch:
    """Initial populations (Gaussian mixtures) and their states after ``horizon`` time units.

    The three splits draw from the same distribution of initial populations with independent
    random streams (``(seed, split, i)``), so val/test populations are unseen ones.
    Integration in float64 with RK4, ``steps`` steps (dt = horizon/steps = 0.01 by default;
    halving dt changes the targets by < 1e-6, see tests/data/test_populations.py).

    Returns ``PopulationBatch(source (n_populations, n_points, dim), target (same),
    population_id)`` with ids ``id_offset + i``: give the splits disjoint offsets when ids must
    be unique across them (the one-hot CGFM baseline needs that).

    ``draw = d >= 1``: the same Gaussian mixtures (population ``i`` of the split has the same
    mixture parameters) with fresh particles from the stream ``(seed, split, i, d)``, evolved the
    same way. Its target is an independent sample of what population ``i`` evolves into (in the
    mean-field limit): the "oracle" prediction, whose distance to the target is the metric's
    finite-sample floor.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if n_populations < 1 or n_points < 2:
        raise ValueError(f"need n_populations >= 1 and n_points >= 2, got {n_populations}, {n_points}")
    if horizon <= 0 or steps < 1:
        raise ValueError(f"need horizon > 0 and steps >= 1, got {horizon}, {steps}")
    if draw < 0:
        raise ValueError(f"draw must be >= 0, got {draw}")
    s = _SPLITS.index(split)
    pops = []
    for i in range(n_populations):
        rng = np.random.default_rng([seed, s, i])
        params = _gaussian_mixture(dim, rng)
        pops.append(_sample_mixture(params, n_points, rng if not draw
                                    else np.random.default_rng([seed, s, i, draw])))
    x0 = np.stack(pops)
    x0t = torch.as_tensor(x0, dtype=torch.float64)
    chunks = [evolve_aggregation(c, horizon, softening=softening, steps=steps)
              for c in x0t.split(max(1, 2**22 // n_points**2))]  # (chunk, N, N) <= 4M entries
    x1 = torch.cat(chunks)
    ids = torch.arange(n_populations) + id_offset
    return PopulationBatch(source=x0t.to(dtype), target=x1.to(dtype), population_id=ids)
