"""Super-resolution WDNO: shapes of repeated refinement, the known coarse condition, training signal."""

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.wavelet_diffusion import SuperResolutionConfig, WDNOSuperResolution, refined_shape, subsample
from sciflow.models.wavelet_diffusion._common import replacement_sample
from sciflow.models.wavelet_diffusion.transform import coefficient_shape, crop, nearest_upsample, to_coefficients
from tests.models.wavelet_diffusion._fit import fit

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, num_heads=2)


def _fields(B=3, T=17, X=33, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T)[:, None]
    x = torch.linspace(0, 1, X)
    k = 1 + torch.randint(1, 4, (B, 1, 1), generator=g)
    u = torch.sin(torch.pi * k * x) * torch.exp(-t)  # (B, T, X)
    f = 0.5 * torch.cos(torch.pi * x) * torch.sin(torch.pi * t) * torch.ones(B, 1, 1)
    return torch.stack([u, f], 2)  # (B, T, 2, X)


def test_subsample_and_refined_grid_are_inverse():
    v = _fields()
    c = subsample(v.movedim(2, 1), 1, 2)
    assert c.shape[2:] == (9, 17) and refined_shape((9, 17)) == (17, 33)
    assert torch.equal(c, v.movedim(2, 1)[:, :, ::2, ::2])


@pytest.mark.parametrize("space", ["wavelet", "physical"])
def test_refinement_shapes_and_repeated_upsampling(space):
    m = WDNOSuperResolution(SuperResolutionConfig(space=space, **SMALL))
    fine = _fields()
    m.fit_scaler(TrajectoryBatch(fine, torch.linspace(0, 1, 17)))
    coarse = TrajectoryBatch(fine[:, ::4, :, ::4], torch.linspace(0, 1, 5))  # (3, 5, 2, 9)
    g = torch.Generator().manual_seed(0)
    assert m.sample(coarse, 2, nfe=2, generator=g).shape == (2, 3, 9, 2, 17)
    x4 = m.upsample(coarse, 4, 2, nfe=2, generator=g)
    assert x4.shape == (2, 3, 17, 2, 33) and torch.isfinite(x4).all()
    x8 = m.upsample(coarse, 8, 1, nfe=2, generator=g)
    assert x8.shape == (1, 3, 33, 2, 65)
    with pytest.raises(ValueError, match="power of 2"):
        m.upsample(coarse, 3)


def test_coarse_condition_is_kept_exactly_by_sampling():
    m = WDNOSuperResolution(SuperResolutionConfig(**SMALL))
    fine = _fields().movedim(2, 1)
    m.fit_scaler(TrajectoryBatch(fine.movedim(1, 2), torch.linspace(0, 1, 17)))
    coarse = fine[:, :, ::2, ::2]
    shape = (17, 33)
    grid = coefficient_shape(shape, "bior2.4", "zero")
    cond = nearest_upsample(to_coefficients(coarse, 2, "bior2.4", "zero"), grid)
    # nearest upsampling: even coefficient indices are the coarse coefficients themselves
    coarse_coef = to_coefficients(coarse, 2, "bior2.4", "zero")
    n_t, n_x = min(coarse_coef.shape[2], (grid[0] + 1) // 2), min(coarse_coef.shape[3], (grid[1] + 1) // 2)
    assert torch.equal(cond[:, :, ::2, ::2][:, :, :n_t, :n_x], coarse_coef[:, :, :n_t, :n_x])
    z_known = m.scaler(torch.cat([torch.zeros_like(cond), cond], 1))
    z_known = torch.nn.functional.pad(z_known, (0, (-grid[1]) % 2, 0, (-grid[0]) % 2))
    known = m.known_mask(shape)
    z = replacement_sample(m.denoiser, m.schedule, known, z_known, replacement="clean", sampler="dpm++", nfe=3,
                           t_min=1e-3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(m.scaler.inverse(crop(z, grid))[:, m.n_fine:], cond, atol=1e-5)


def test_superres_loss_decreases_over_levels():
    torch.manual_seed(0)
    m = WDNOSuperResolution(SuperResolutionConfig(levels=2, **SMALL))
    b = TrajectoryBatch(_fields(B=2), torch.linspace(0, 1, 17))
    m.fit_scaler(b)
    out = m.loss(b)
    assert set(out.terms) == {"eps_mse_level0", "eps_mse_level1"}

    def held_out():
        gg = torch.Generator().manual_seed(7)
        with torch.no_grad():
            return sum(float(m.loss(b, generator=gg).total) for _ in range(4)) / 4

    first = held_out()
    fit(m, b, 60)
    assert held_out() < first / 1.5


def test_superres_input_errors():
    m = WDNOSuperResolution(SuperResolutionConfig(**SMALL))
    with pytest.raises(ValueError, match="odd length"):
        m.fit_scaler(TrajectoryBatch(_fields(T=16), torch.linspace(0, 1, 16)))
    with pytest.raises(RuntimeError, match="fit_scaler"):
        m.loss(TrajectoryBatch(_fields(), torch.linspace(0, 1, 17)))
    with pytest.raises(ValueError, match="too small"):
        WDNOSuperResolution(SuperResolutionConfig(levels=3, **SMALL)).fit_scaler(
            TrajectoryBatch(_fields(T=5, X=5), torch.linspace(0, 1, 5)))
    with pytest.raises(ValueError, match="levels"):
        SuperResolutionConfig(levels=0)
