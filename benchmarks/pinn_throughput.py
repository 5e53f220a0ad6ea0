"""PINN training throughput on Burgers (steps/s), all measured in one run, interleaved.

Same network (4 x 128 tanh MLP on (t, x), Glorot), same points (``--n-domain`` interior +
160 initial + 80 boundary, fixed), same optimiser (Adam, lr 1e-3):

- ``sciflow_<engine>``: :class:`CausalPINN` loss (causal weights on) with the derivative
  engine ``taylor`` (Taylor mode), ``autograd`` (nested double backward), ``hvp`` (batched
  forward-over-reverse Hessian-vector products), ``vmap_hessian`` (per-point ``torch.func``
  Hessians under ``vmap``), ``jvp`` (nested forward mode, ``--all``); Adam as in
  :func:`~sciflow.models.causal_pinn.train` (``fused=True``, one kernel for all parameters)
- ``sciflow_taylor_foreach``: Taylor engine with the multi-tensor (``foreach``) Adam instead
- ``plain_autograd``: a textbook PINN step written here (double backward, no causal weights)
- ``sciflow_<engine>_compiled`` (``--compile``): the loss (forward and, through AOTAutograd, its
  backward) under ``torch.compile``, fused Adam (``Config.compile=True``)
- ``deepxde``: DeepXDE (PyTorch backend) ``TimePDE`` Burgers example, if importable

Ratios are against ``plain_autograd`` and ``deepxde`` measured in the same process; rounds are
interleaved so that load from other processes hits every method alike. Medians over rounds.
Rates are per second of process CPU time by default (``--clock cpu``; one torch thread), which
other users' load on a shared machine does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from sciflow.data.batches import CollocationBatch  # noqa: E402
from sciflow.models.causal_pinn import CausalPINN, Config  # noqa: E402

NU = 0.01 / math.pi


def points(n_domain: int, seed: int = 0) -> CollocationBatch:
    g = torch.Generator().manual_seed(seed)
    interior = torch.cat([torch.rand(n_domain, 1, generator=g) * 0.99,
                          2 * torch.rand(n_domain, 1, generator=g) - 1], 1)
    x0 = 2 * torch.rand(160, 1, generator=g) - 1
    initial = torch.cat([torch.zeros(160, 1), x0], 1)
    tb = torch.rand(80, 1, generator=g) * 0.99
    xb = torch.where(torch.rand(80, 1, generator=g) < 0.5, -1.0, 1.0)
    boundary = torch.cat([tb, xb], 1)
    return CollocationBatch(interior, initial, -torch.sin(math.pi * x0), boundary, torch.zeros(80, 1))


def sciflow_step(engine: str, batch: CollocationBatch, compiled: bool = False, fused: bool = True):
    cfg = Config(problem="burgers", width=128, depth=4, periodic_embedding=False, balance=False,
                 n_interior=batch.interior.shape[0], n_chunks=32, derivative_engine=engine)
    model = CausalPINN(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {"foreach": True}))
    loss_fn = (lambda b: model.loss(b).total)
    if compiled:
        loss_fn = torch.compile(loss_fn)

    def step():
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step, model


def plain_step(batch: CollocationBatch):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 128), torch.nn.Tanh()]
    for _ in range(3):
        layers += [torch.nn.Linear(128, 128), torch.nn.Tanh()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(128, 1))
    for m in net:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_normal_(m.weight)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X = batch.interior.clone().requires_grad_(True)

    def step():
        u = net(X)
        (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)
        u_t, u_x = g[:, 0:1], g[:, 1:2]
        (g2,) = torch.autograd.grad(u_x.sum(), X, create_graph=True)
        r = u_t + u * u_x - NU * g2[:, 1:2]
        loss = (r ** 2).mean() + (net(batch.initial) - batch.initial_values).pow(2).mean() \
            + (net(batch.boundary) - batch.boundary_values).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def deepxde_step(n_domain: int):
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    try:
        import deepxde as dde
    except Exception as e:  # pragma: no cover - optional dependency
        return None, f"deepxde not importable: {e}"
    geom = dde.geometry.GeometryXTime(dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 0.99))

    def pde(x, y):
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - NU * dy_xx

    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_b: on_b)
    ic = dde.icbc.IC(geom, lambda x: -torch.sin(math.pi * x[:, 0:1]) if isinstance(x, torch.Tensor)
                     else -__import__("numpy").sin(math.pi * x[:, 0:1]), lambda _, on_i: on_i)
    data = dde.data.TimePDE(geom, pde, [bc, ic], num_domain=n_domain, num_boundary=80, num_initial=160)
    net = dde.nn.FNN([2] + [128] * 4 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)

    def step(n=1):
        model.train(iterations=n, display_every=10 ** 9, verbose=0)

    return step, f"deepxde {dde.__version__}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-domain", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--all", action="store_true", help="also the slow engines (jvp, vmap_hessian)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: steps per second of process CPU time (robust to other users' load "
                         "on a shared machine; torch threads = 1); wall: perf_counter")
    ap.add_argument("--scale", choices=["cpu", "large"], default="cpu",
                    help="large: 4096 domain points")
    args = ap.parse_args(argv)
    if args.scale == "large":
        args.n_domain = 4096
    torch.set_num_threads(args.threads)
    batch = points(args.n_domain)
    methods = {}
    s_taylor, m_taylor = sciflow_step("taylor", batch)
    s_auto, m_auto = sciflow_step("autograd", batch)
    methods["sciflow_taylor"] = s_taylor
    methods["sciflow_taylor_foreach"] = sciflow_step("taylor", batch, fused=False)[0]
    methods["sciflow_autograd"] = s_auto
    methods["sciflow_hvp"] = sciflow_step("hvp", batch)[0]
    if args.all:
        methods["sciflow_vmap_hessian"] = sciflow_step("vmap_hessian", batch)[0]
        methods["sciflow_jvp"] = sciflow_step("jvp", batch)[0]
    methods["plain_autograd"] = plain_step(batch)
    notes = {}
    # equal numerics: the Taylor and autograd engines give the same loss on the same network
    m_auto.load_state_dict(m_taylor.state_dict())
    notes["max_abs_residual_taylor_minus_autograd"] = float((m_taylor.residual(batch.interior)
                                                             - m_auto.residual(batch.interior)).abs().max())
    if args.compile:
        for engine in ("taylor",):  # nested autograd: aot_autograd has no double backward
            c0 = time.process_time()
            sc, _ = sciflow_step(engine, batch, compiled=True)
            sc()
            notes[f"compile_cpu_seconds_{engine}"] = time.process_time() - c0
            methods[f"sciflow_{engine}_compiled"] = sc
    dx, info = deepxde_step(args.n_domain)
    notes["deepxde"] = info
    if dx is not None:
        dx(5)  # warm-up (first call builds the graph / optimiser)
        methods["deepxde"] = lambda: dx(args.steps)

    samples: dict[str, list[float]] = {k: [] for k in methods}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for _ in range(args.rounds):
        for name, fn in methods.items():
            if name == "deepxde":
                t0 = clock()
                fn()
            else:
                fn()  # warm-up step
                t0 = clock()
                for _ in range(args.steps):
                    fn()
            samples[name].append(args.steps / (clock() - t0))
    rate = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {f"{k}_vs_plain_autograd": rate[k] / rate["plain_autograd"] for k in rate}
    if "deepxde" in rate:
        ratios.update({f"{k}_vs_deepxde": rate[k] / rate["deepxde"] for k in rate})
    write_result(f"pinn_throughput_{args.n_domain}", {
        "problem": "burgers", "network": "4x128 tanh MLP", "optimizer": "Adam lr=1e-3",
        "n_domain": args.n_domain, "n_initial": 160, "n_boundary": 80,
        "steps_per_block": args.steps, "rounds": args.rounds,
        "steps_per_s_median": rate, "steps_per_s_all": samples, "ratios": ratios, "notes": notes,
        "clock": args.clock,
        "conditions": "shared 2-core CPU (8 concurrent users), torch threads = %d, interleaved rounds, "
                      "rates in steps per %s second" % (args.threads, args.clock),
    })


if __name__ == "__main__":
    main()
