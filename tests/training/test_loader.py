"""The resumable loader: seeded epochs, exact position restore, evaluation order."""

from __future__ import annotations

import pytest
import torch
from _trainer_toy import toy_data

from sciflow.training import BatchLoader


def _ids(loader, n_batches):
    out = []
    it = iter(loader)
    for _ in range(n_batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        out.append(b.values[:, 0, 0].clone())
    return out


def test_epochs_are_permutations_and_differ() -> None:
    data = toy_data(32)
    loader = BatchLoader(data, 8, seed=1)
    ep0 = torch.cat([b.values[:, 0, 0] for b in loader])
    ep1 = torch.cat([b.values[:, 0, 0] for b in loader])
    full = data.values[:, 0, 0]
    assert torch.equal(ep0.sort().values, full.sort().values)
    assert torch.equal(ep1.sort().values, full.sort().values)
    assert not torch.equal(ep0, ep1) and not torch.equal(ep0, full)
    assert loader.epoch == 2 and len(loader) == 4


def test_state_dict_restores_position_mid_epoch_and_across_epochs() -> None:
    data = toy_data(30)
    ref = _ids(BatchLoader(data, 8, seed=2), 9)  # 3 batches per epoch (drop_last)
    a = BatchLoader(data, 8, seed=2)
    first = _ids(a, 4)
    b = BatchLoader(data, 8, seed=2)
    b.load_state_dict(a.state_dict())
    rest = _ids(b, 5)
    for x, y in zip(ref, first + rest):
        assert torch.equal(x, y)


def test_eval_loader_keeps_order_and_last_batch() -> None:
    data = toy_data(10)
    loader = BatchLoader(data, 4, shuffle=False)
    got = torch.cat([b.values for b in loader])
    assert torch.equal(got, data.values) and len(loader) == 3


def test_state_from_other_data_is_rejected() -> None:
    a = BatchLoader(toy_data(30), 8)
    with pytest.raises(ValueError, match="data changed"):
        BatchLoader(toy_data(31), 8).load_state_dict(a.state_dict())
