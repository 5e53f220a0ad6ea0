"""Super-resolution WDNO through ``sciflow train`` / ``sciflow evaluate`` (sciflow.cli.superres):
stacked data variables, the x4 evaluation against nearest and multilinear baselines, its scores
checked against a stand-in model whose output is known, and the errors."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import xarray as xr

from sciflow.cli import dataset_to_batch, main
from sciflow.cli.superres import _new_points
from sciflow.config import ConfigError, DataConfig
from sciflow.models.wavelet_diffusion import WDNOSuperResolution
from sciflow.models.wavelet_diffusion.superres import interpolate, nearest

TINY = ["data.params.n=12", "data.params.nx=17", "data.params.nt=9", "data.params.n_modes=32", "data.params.dt=0.005",
        "train.max_steps=3", "train.warmup_steps=0", "model.base_channels=8", "eval.n_samples=3"]


def _train(run: Path, *extra: str) -> int:
    return main(["train", "wdno_burgers_superres", "--run-dir", str(run), *TINY, *extra])


def test_nearest_and_multilinear_baselines_and_the_new_points():
    """Both keep the coarse points; multilinear reproduces a bilinear function exactly, nearest
    copies the closer coarse point; the new points of a 9 x 17 grid refined x4 are all but 3 x 5."""
    t, x = torch.linspace(0, 1, 3), torch.linspace(0, 1, 5)
    f = lambda t, x: 2 * t[:, None] - 3 * x[None, :] + t[:, None] * x[None, :]  # noqa: E731
    coarse = f(t, x)[None, None]
    tf, xf = torch.linspace(0, 1, 9), torch.linspace(0, 1, 17)
    lin, near = interpolate(coarse, (9, 17)), nearest(coarse, (9, 17))
    assert torch.allclose(lin[0, 0], f(tf, xf), atol=1e-6)
    assert torch.equal(lin[..., ::4, ::4], coarse) and torch.equal(near[..., ::4, ::4], coarse)
    assert torch.equal(near[0, 0, 1, 1], coarse[0, 0, 0, 0]) and torch.equal(near[0, 0, 3, 3], coarse[0, 0, 1, 1])
    new = _new_points((9, 17), 4)
    assert int(new.sum()) == 9 * 17 - 3 * 5 and not new[::4, ::4].any()


def test_stacked_variables_make_a_channel_axis():
    u = torch.randn(3, 4, 5)
    ds = xr.Dataset({"u": (("sample", "time", "x"), u.numpy()), "forcing": (("sample", "time", "x"), -u.numpy()),
                     "scale": (("sample",), [1.0, 2.0, 3.0])},
                    coords={"sample": range(3), "time": [0.0, 0.1, 0.2, 0.3], "x": range(5)})
    b = dataset_to_batch(ds, variables=["u", "forcing"])
    assert b.values.shape == (3, 4, 2, 5)
    assert torch.equal(b.values[:, :, 0], u) and torch.equal(b.values[:, :, 1], -u)
    with pytest.raises(ConfigError, match=r"data.variables = 'v' is not a trajectory variable; "
                                          r"available: \['u', 'forcing'\]"):
        dataset_to_batch(ds, variables=["u", "v"])
    with pytest.raises(ValueError, match="not both"):
        DataConfig(variable="u", variables=("u", "forcing"))
    with pytest.raises(ValueError, match="distinct"):
        DataConfig(variables=("u", "u"))


def test_train_and_evaluate_from_the_command_line(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "sr"
    assert _train(run) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", str(run)]) == 0
    m = json.loads((run / "eval_samples.json").read_text())
    assert (m["factor"], m["coarse_grid"], m["fine_grid"], m["n_samples"]) == (4, [3, 5], [9, 17], 3)
    assert set(m["channels"]) == {"u", "forcing"}
    for ch in m["channels"].values():
        assert all(math.isfinite(ch[k]) for k in ("mse", "rel_l2", "crps_new", "mean_interval_width_new"))
        assert ch["mse"] <= ch["mse_one_sample"] + 1e-12  # the mean of the chains beats one chain (Jensen)
        assert ch["new_points"] == 138 and 0 <= ch["coverage_new"] <= 1
    assert main(["evaluate", str(run), "--uq", "conformal"]) == 2
    assert "use --uq samples" in capsys.readouterr().err


def test_scores_of_a_stand_in_model_with_a_known_output(tmp_path: Path, monkeypatch) -> None:
    """A refiner that returns the multilinear interpolant (every chain alike) scores exactly as that
    baseline, ratio 1, zero interval width; one that returns the truth scores zero error and full coverage."""
    torch.set_num_threads(1)
    run = tmp_path / "sr"
    assert _train(run) == 0

    def interpolant(self, batch, factor=2, n_samples=1, **kw):
        f = batch.values.movedim(2, 1)  # (B, C, T, X)
        shape = tuple((n - 1) * factor + 1 for n in f.shape[2:])
        return interpolate(f, shape).movedim(1, 2).expand(n_samples, -1, -1, -1, -1)

    monkeypatch.setattr(WDNOSuperResolution, "upsample", interpolant)
    assert main(["evaluate", str(run)]) == 0
    for ch in json.loads((run / "eval_samples.json").read_text())["channels"].values():
        assert ch["mse"] == pytest.approx(ch["multilinear"]["mse"], rel=1e-6) and ch["mse"] > 0
        assert ch["ratio_mse_to_multilinear"] == pytest.approx(1.0, rel=1e-6)
        assert ch["mean_interval_width_new"] == 0 and ch["nearest"]["mse"] > ch["multilinear"]["mse"]

    from sciflow.cli.pipeline import load_run, prepare_splits

    truth = prepare_splits(load_run(run)).test.values
    monkeypatch.setattr(WDNOSuperResolution, "upsample", lambda self, b, factor=2, n_samples=1, **kw:
                        truth.expand(n_samples, *truth.shape).to(b.values.device))
    assert main(["evaluate", str(run)]) == 0
    for ch in json.loads((run / "eval_samples.json").read_text())["channels"].values():
        assert ch["mse"] < 1e-12 and ch["crps_new"] < 1e-7 and ch["coverage_new"] == 1.0  # (3 x) / 3 rounds
