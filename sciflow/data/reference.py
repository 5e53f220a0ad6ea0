"""Bundled reference solutions of the PINN benchmarks (``sciflow/data/fixtures``, MIT, Raissi et al.).

``load_reference("burgers_shock")`` / ``load_reference("allen_cahn")`` return a
:class:`ReferenceSolution` with ``x (nx,)``, ``t (nt,)`` and ``u (nx, nt)`` laid out ``(x, t)``
as in the original files. The file's SHA-256 is checked against the value recorded at copy time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciflow.data.schema import DatasetError

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# name -> (file, x key, t key, u key, sha256)
_FILES: dict[str, tuple[str, str, str, str, str]] = {
    "burgers_shock": ("burgers_shock.mat", "x", "t", "usol",
                      "f4d11e6798b8d29b6829984952b04adcc470d9bf70dd7e56c7985cd8e316c4bf"),
    "allen_cahn": ("allen_cahn.mat", "x", "tt", "uu",
                   "266e97eedd9ef543d7f6d370fa5f06388761aa7da2b97e476562dcf1d644a175"),
}


@dataclass(frozen=True)
class ReferenceSolution:
    """A reference solution on its tensor grid: ``u[i, j] = u(x[i], t[j])``."""

    name: str
    x: np.ndarray
    t: np.ndarray
    u: np.ndarray

    def relative_l2(self, u: np.ndarray) -> float:
        """``||u - u_ref||_2 / ||u_ref||_2`` over the grid; ``u`` laid out ``(x, t)``."""
        u = np.asarray(u)
        if u.shape != self.u.shape:
            raise ValueError(f"relative_l2: expected shape {self.u.shape} (x, t), got {u.shape}")
        return float(np.linalg.norm(u - self.u) / np.linalg.norm(self.u))


def available() -> list[str]:
    return sorted(_FILES)


def load_reference(name: str) -> ReferenceSolution:
    """Load a bundled reference solution by name (see :func:`available`)."""
    if name not in _FILES:
        raise KeyError(f"unknown reference {name!r}; available: {available()}")
    fname, kx, kt, ku, sha = _FILES[name]
    path = FIXTURES / fname
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled reference file missing (broken installation?)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha:
        raise DatasetError(f"checksum mismatch (sha256 {digest}, expected {sha})", str(path))
    from scipy.io import loadmat

    d = loadmat(path)
    x, t, u = np.ravel(d[kx]).astype(np.float64), np.ravel(d[kt]).astype(np.float64), np.asarray(d[ku], np.float64)
    if u.shape != (x.size, t.size):
        raise DatasetError(f"array {ku!r} has shape {u.shape}, expected (x, t) = {(x.size, t.size)}", str(path))
    return ReferenceSolution(name, x, t, u)
