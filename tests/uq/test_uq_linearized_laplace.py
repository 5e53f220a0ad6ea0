"""Linearised Laplace over a subnetwork: LastLayerLaplace exactly where that applies, the GGN and
GLM predictive of explicit Jacobians for a transformed head and for a whole nonlinear network,
forward-mode Jacobians through an ODE solver against finite differences, the evidence and the
held-out noise fit, masks, coverage, and the input it refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciflow.models.neural_ode.config import Config as NODEConfig
from sciflow.models.neural_ode.model import NeuralODE
from sciflow.uq import LastLayerLaplace, LinearizedLaplace, PointForecaster
from sciflow.uq.laplace import held_out_noise
from sciflow.uq.linearized_laplace import subnetwork
from tests.uq.test_uq_laplace import DT, Features, batch_of, covers_and_widens


def _data(n, seed, lo=-2.0, hi=2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=DT) * (hi - lo) + lo
    y = torch.cat([torch.sin(2 * x), x ** 2 / 4], 1) + 0.1 * torch.randn(n, 2, generator=g, dtype=DT)
    return x, y


def _trained(net, x, y, steps=300, lr=0.05):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    return net


def test_equals_last_layer_laplace_where_the_head_is_the_layer():
    """Prediction = last layer's output: the linearisation is exact and the GGN is the Kronecker
    product LastLayerLaplace uses, so prior precision, noise (training and held-out fit),
    evidence and predictive variance agree to rounding."""
    x, y = _data(60, 2)
    model = PointForecaster(_trained(Features(seed=3), x, y))
    xv, yv = _data(40, 3)
    xt = torch.linspace(-4, 4, 30, dtype=DT)[:, None]
    test = batch_of(xt, torch.zeros(30, 2, dtype=DT))
    last = LastLayerLaplace(model).fit([batch_of(x, y)])
    lin = LinearizedLaplace(model).fit([batch_of(x[:25], y[:25]), batch_of(x[25:], y[25:])])
    assert lin.n_params == 26 and subnetwork(model, None) == ["net.out.weight", "net.out.bias"]
    assert abs(lin.observation_noise / last.observation_noise - 1) < 1e-10
    assert abs(lin.prior_precision / last.prior_precision - 1) < 1e-8
    assert abs(lin.log_marginal_likelihood(2.0) - last.log_marginal_likelihood(2.0)) < 1e-7
    torch.testing.assert_close(lin.predict(test).variance, last.predict(test).variance, rtol=1e-8, atol=1e-14)
    last.fit_noise([batch_of(xv, yv)])
    lin.fit_noise([batch_of(xv, yv)])
    assert abs(lin.observation_noise / last.observation_noise - 1) < 1e-7
    torch.testing.assert_close(lin.predict(test).variance, last.predict(test).variance, rtol=1e-7, atol=1e-14)


class ScaledFlipped(nn.Module):
    """A head LastLayerLaplace refuses: per-output scale and reversed order after the last layer."""

    def __init__(self):
        super().__init__()
        self.body = Features(seed=4)

    def forward(self, x):
        return self.body(x).flip(-1) * torch.tensor([3.0, -0.5], dtype=DT) + 1.0


def _explicit(model, params, x):
    """The Jacobian of the flattened predictions at ``x`` w.r.t. the flattened ``params``."""
    named = dict(model.named_parameters())
    theta = torch.cat([named[k].detach().reshape(-1) for k in params])
    sizes = [named[k].numel() for k in params]

    def f(th):
        p = {k: v.reshape(named[k].shape) for k, v in zip(params, th.split(sizes))}
        return torch.func.functional_call(model, p, (batch_of(x, torch.zeros(len(x), 2, dtype=DT)),),
                                          strict=False).reshape(-1)

    return torch.func.jacrev(f)(theta), theta


@pytest.mark.parametrize("params", ["head", "all"])
def test_ggn_and_glm_predictive_match_explicit_jacobians(params):
    """A transformed head (last layer) and a whole nonlinear tanh network: H = J^T J / s2 + lam I
    and the predictive variance diag(J* H^-1 J*^T) + s2 from torch.func.jacrev, and draws with
    that covariance jointly over the outputs."""
    x, y = _data(50, 5)
    if params == "head":
        net = ScaledFlipped()
        with pytest.raises(ValueError, match="not the last layer's output"):
            LastLayerLaplace(PointForecaster(net)).fit([batch_of(x, y)])
    else:
        torch.manual_seed(0)
        net = _trained(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double(), torch.cat(
            [x, torch.zeros_like(x)], 1), y, steps=200)
    model = PointForecaster(net)
    lam, s2 = 0.7, 0.02
    lap = LinearizedLaplace(model, params=None if params == "head" else "all", prior_precision=lam,
                            observation_noise=s2, n_samples=40000).fit([batch_of(x, y)])
    names = subnetwork(model, None if params == "head" else "all")
    J, theta = _explicit(model, names, x)
    H = J.T @ J / s2 + lam * torch.eye(len(theta), dtype=DT)
    xt = torch.tensor([[0.3], [3.0]], dtype=DT)
    Jt, _ = _explicit(model, names, xt)
    cov = Jt @ torch.linalg.solve(H, Jt.T) + s2 * torch.eye(4, dtype=DT)
    pred = lap.predict(batch_of(xt, torch.zeros(2, 2, dtype=DT)), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(pred.variance.reshape(-1), cov.diagonal(), rtol=1e-9, atol=1e-14)
    emp = torch.cov(pred.samples.reshape(40000, -1).T)              # joint over the 4 outputs
    sd = cov.diagonal().sqrt()
    assert float(((emp - cov) / torch.outer(sd, sd)).abs().max()) < 0.03     # s.e. of a correlation ~0.005
    assert abs(lap.effective_parameters - float((lambda e: (e / (e + lam)).sum())(
        torch.linalg.eigvalsh(J.T @ J / s2)))) < 1e-8


def test_jacobian_through_an_ode_solver_matches_finite_differences():
    """The last layer of a neural ODE's vector field (the prediction is a solve, nonlinear in it):
    forward-mode columns, vectorised or one by one, equal central differences."""
    torch.manual_seed(0)
    model = NeuralODE(NODEConfig(width=8, depth=1, solver="rk4")).double()
    from sciflow.data.batches import TrajectoryBatch

    batch = TrajectoryBatch(values=torch.randn(3, 6, 3, dtype=DT), times=torch.linspace(0, 0.5, 6, dtype=DT))
    lap = LinearizedLaplace(model)
    assert lap.n_params == 3 * 9
    V = torch.randn(4, lap.n_params, dtype=DT)
    pred, jv = lap._products(batch, V)
    theta = lap.weights.flat()
    h = 1e-6
    for i in range(4):
        outs = []
        for s in (1, -1):
            params = lap.weights.unflatten(theta + s * h * V[i]) | lap.weights.fixed
            with torch.no_grad():
                outs.append(torch.func.functional_call(lap._call, params, (batch,)))
        torch.testing.assert_close(jv[i], (outs[0] - outs[1]) / (2 * h), rtol=1e-6, atol=1e-9)
    assert torch.all(jv[:, :, 0] == 0)                     # the initial state does not depend on the field
    lap.weights.vectorise = False
    torch.testing.assert_close(lap._products(batch, V)[1], jv, rtol=1e-12, atol=1e-14)


def test_evidence_noise_fit_masks_and_coverage_on_a_trained_network():
    """Whole-network linearised Laplace of a trained MLP on y = sin(3x) + 0.1 e: MacKay's prior
    precision maximises the evidence; after the held-out noise fit the mean predictive variance
    there is the MSE and 90 % intervals cover 0.85-0.95; the variance grows outside the data;
    unobserved entries (even NaN) change nothing."""
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    f = lambda x: torch.sin(3 * x)  # noqa: E731
    x = torch.rand(300, 1, generator=g, dtype=DT) * 2 - 1
    y = f(x) + 0.1 * torch.randn(300, 1, generator=g, dtype=DT)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    model = PointForecaster(net)
    train = batch_of(x, y)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(1500):
        opt.zero_grad()
        model.loss(train).total.backward()
        opt.step()
    lap = LinearizedLaplace(model, params="all", n_samples=10).fit([train])
    lam = lap.prior_precision
    for r in (0.5, 0.9, 1.1, 2.0):
        assert lap.log_marginal_likelihood(lam * r) < lap.log_marginal_likelihood()
    xv = torch.rand(300, 1, generator=g, dtype=DT) * 2 - 1
    val = batch_of(xv, f(xv) + 0.1 * torch.randn(300, 1, generator=g, dtype=DT))
    lap.fit_noise([val])
    pv = lap.predict(val)
    mse = float(((pv.mean - val.values[:, 1:]) ** 2).mean())
    assert abs(float(pv.variance.mean()) / mse - 1) < 1e-6
    xt = torch.rand(2000, 1, generator=g, dtype=DT) * 2 - 1
    yt = f(xt) + 0.1 * torch.randn(2000, 1, generator=g, dtype=DT)
    covers_and_widens(lap, xt, yt, far=2.5)
    # masks: the second half of the training targets marked unobserved (and corrupted) = fitting the first half
    half = torch.arange(300) < 150
    bad = batch_of(x, torch.where(half[:, None], y, torch.nan))
    mask = lambda b, p: half[:, None, None].expand_as(p)  # noqa: E731
    masked = LinearizedLaplace(model, params="all").fit([bad], observed=mask)
    first = LinearizedLaplace(model, params="all").fit([batch_of(x[:150], y[:150])])
    assert abs(masked.observation_noise / first.observation_noise - 1) < 1e-12
    assert abs(masked.prior_precision / first.prior_precision - 1) < 1e-8
    with pytest.raises(ValueError, match="non-finite values at observed entries"):
        LinearizedLaplace(model, params="all").fit([bad])


def test_bad_use_is_refused_with_clear_errors():
    model = PointForecaster(Features())
    b = batch_of(torch.randn(4, 1, dtype=DT), torch.randn(4, 2, dtype=DT))
    with pytest.raises(ValueError, match="'net.nope' is not a parameter"):
        LinearizedLaplace(model, params=["net.nope"])
    with pytest.raises(ValueError, match="not a module of the model"):
        LinearizedLaplace(model, params=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="params='last'"):
        LinearizedLaplace(model, params="last")
    with pytest.raises(ValueError, match="no nn.Linear"):
        LinearizedLaplace(PointForecaster(nn.Tanh()))
    with pytest.raises(ValueError, match="prior_precision"):
        LinearizedLaplace(model, prior_precision=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        LinearizedLaplace(model, chunk_size=0)
    lap = LinearizedLaplace(model)
    with pytest.raises(RuntimeError, match="before predict"):
        lap.predict(b)
    with pytest.raises(RuntimeError, match="before fit_noise"):
        lap.fit_noise([b])
    with pytest.raises(ValueError, match="no batches"):
        lap.fit([])
    with pytest.raises(ValueError, match="observed mask has shape"):
        lap.fit([b], observed=lambda batch, p: torch.ones(3, dtype=torch.bool))
    lap.fit([b])
    with torch.no_grad():
        model.net.out.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite values"):
        lap.predict(b)


def test_noise_per_group_is_heteroscedastic_and_calibrates_each_group():
    """Two outputs with noise sd 0.05 and 0.5: with noise_dims=(2,) (one variance per output) the
    held-out fit recovers each variance, both outputs' 90 % intervals cover 0.85-0.95 and the
    precision is sum_k G_k / s2_k + lam I of the explicit Jacobians; one shared variance
    over-covers the quiet output and under-covers the noisy one."""
    g = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    sd = torch.tensor([0.05, 0.5], dtype=DT)

    def draw(n):
        x = torch.rand(n, 1, generator=g, dtype=DT) * 4 - 2
        return x, torch.cat([torch.sin(2 * x), torch.cos(x)], 1) + sd * torch.randn(n, 2, generator=g, dtype=DT)

    (x, y), (xv, yv), (xt, yt) = draw(400), draw(400), draw(2000)
    model = PointForecaster(_trained(Features(width=24, seed=8), x, y, steps=500))
    covers = {}
    for dims in ((), (2,)):
        lap = LinearizedLaplace(model, noise_dims=dims).fit([batch_of(x, y)]).fit_noise([batch_of(xv, yv)])
        pred = lap.predict(batch_of(xt, yt))
        inside = ((pred.lower <= yt[:, None]) & (yt[:, None] <= pred.upper)).double()
        covers[dims] = inside.mean((0, 1))
    assert all(0.85 <= float(c) <= 0.95 for c in covers[(2,)]), covers
    assert float(covers[()][0]) > 0.99 and float(covers[()][1]) < 0.8, covers
    torch.testing.assert_close(lap.observation_noise.sqrt(), sd, rtol=0.15, atol=0)
    # the heteroscedastic precision against explicit Jacobians
    names = subnetwork(model, None)
    J, theta = _explicit(model, names, x)                       # rows: (sample, output) pairs
    s2 = lap.observation_noise.repeat(len(x))
    H = J.T @ (J / s2[:, None]) + lap.prior_precision * torch.eye(len(theta), dtype=DT)
    Jt, _ = _explicit(model, names, xt[:3])
    var = (Jt @ torch.linalg.solve(H, Jt.T)).diagonal() + lap.observation_noise.repeat(3)
    torch.testing.assert_close(lap.predict(batch_of(xt[:3], yt[:3])).variance.reshape(-1), var, rtol=1e-8,
                               atol=1e-14)
    with pytest.raises(ValueError, match="noise_dims .* do not fit"):
        LinearizedLaplace(model, noise_dims=(3,)).fit([batch_of(x, y)])
    with pytest.raises(ValueError, match="noise_dims are prediction axes"):
        LinearizedLaplace(model, noise_dims=(0,))


def test_subnetwork_choices():
    """Default: the last nn.Linear or convolution (a neural operator's 1x1 projection); modules,
    names and 'all' select in the model's parameter order."""
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Conv1d(4, 1, 1), nn.LayerNorm(1))
    assert subnetwork(net, None) == ["2.weight", "2.bias"]
    assert subnetwork(net, [net[2], net[0]]) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert subnetwork(net, ["3.bias", "0.weight"]) == ["0.weight", "3.bias"]
    assert subnetwork(net, "all") == [k for k, _ in net.named_parameters()]
    with pytest.raises(ValueError, match="selects no weights"):
        subnetwork(net, [])


def test_held_out_noise_fit_where_the_plain_fixed_point_diverges():
    """epistemic(s) = 3 s: the iteration s <- MSE - 3 s diverges, bisection finds MSE / 4. Far more
    weights than data (D = 322, 20 training entries), where s <- MSE - epistemic(s) jumps between
    1e-6 MSE and MSE for ever: the mean predictive variance on held-out data equals its MSE, with
    one noise and with one per output."""
    assert abs(held_out_noise(1.0, lambda s: 3 * s) - 0.25) < 1e-9
    assert held_out_noise(2.0, lambda s: 5.0) == 2e-6                  # epistemic alone exceeds the MSE
    x, y = _data(10, 11)
    xv, yv = _data(40, 12)
    torch.manual_seed(1)
    net = _trained(nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 2)).double(),
                   torch.cat([x, torch.zeros_like(x)], 1), y, steps=300, lr=0.02)
    model, val = PointForecaster(net), batch_of(xv, yv)
    for dims in ((), (2,)):
        lap = LinearizedLaplace(model, "all", noise_dims=dims).fit([batch_of(x, y)]).fit_noise([val])
        assert lap.n_params == 322 and lap.noise_fit["converged"], lap.noise_fit
        pv = lap.predict(val)
        err2 = (pv.mean - val.values[:, 1:]) ** 2
        axes = (0, 1, 2) if not dims else (0, 1)
        torch.testing.assert_close(pv.variance.mean(axes), err2.mean(axes), rtol=1e-6, atol=0)
        assert bool((lap.noise > 1e-3 * err2.mean()).all())             # not pinned at the floor
