"""LangevinFlow on NLB tensors end to end: train on the fixture, score with evaluate_nlb."""

from __future__ import annotations

import math

import torch

from sciflow.data.nlb import load_nlb, write_nlb_fixture
from sciflow.models.langevin_flow import Config, LangevinFlow, evaluate_nlb


def test_langevin_flow_on_nlb_fixture(tmp_path):
    fx = write_nlb_fixture(tmp_path, n_train=32, n_eval=16, seed=1, base_rate=0.5)
    data = load_nlb(fx["paths"], dataset=fx["name"])
    cfg = Config(obs_dim=data.n_heldin + data.n_heldout, input_dim=data.n_heldin, n_forward=data.n_forward,
                 latent_dim=8, encoder_hidden=16, d_model=16, n_heads=2, ff_dim=32, kl_ramp_steps=20,
                 coordinated_dropout=0.2, dropout=0.0)
    torch.manual_seed(0)
    model = LangevinFlow(cfg)
    train = data.train_batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        out = model.loss(train.index(torch.randint(len(train), (16,), generator=g)))
        opt.zero_grad()
        out.total.backward()
        opt.step()
    model.eval()
    T = data.train_spikes_heldin.shape[1]
    gen = torch.Generator().manual_seed(0)
    train_rates = model.posterior_mean(train, generator=gen)[:, :T]
    eval_rates = model.posterior_mean(data.eval_input_batch(), generator=gen)
    scores = evaluate_nlb(data, train_rates, eval_rates[:, :T], eval_rates[:, T:])
    truth = evaluate_nlb(data, fx["train_rates"][:, :T].float(), fx["eval_rates"][:, :T].float(),
                         fx["eval_rates"][:, T:].float())
    print(scores, truth)
    assert set(scores) == {"co-bps", "vel R2", "psth R2", "fp-bps"} and all(map(math.isfinite, scores.values()))
    # the held-out neurons are predicted from the held-in ones better than by their mean rates
    assert 0.0 < scores["co-bps"] < truth["co-bps"] + 0.05
