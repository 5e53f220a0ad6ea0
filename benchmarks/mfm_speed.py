"""Meta flow matching speed: sampling 1000 points with fixed-step vs adaptive solvers, and the
population-embedding cost (chunked k-NN graph + GCN) vs population size.

    python benchmarks/mfm_speed.py            # CPU-sized
    python benchmarks/mfm_speed.py --scale 4  # populations up to 200 000 points (GPU), more repeats

Sampling: a field briefly trained on Letters (so it is not the trivially smooth untrained one);
every solver's end state is compared with a dopri5 reference at rtol = atol = 1e-8 (max abs
error), times are medians; ratios are against adaptive dopri5 at the default rtol = 1e-4.
Embedding: median time of one encoder pass (chunked exact k-NN graph + 3 GCN layers + mean pool)
for populations of 256 ... 50 000 points, and its memory two ways: the largest tensor any op
allocates (counted with a dispatch mode; exact, deterministic) and the peak resident-set growth
of the process during the pass (Linux: VmHWM after resetting it through /proc/self/clear_refs;
CUDA: max_memory_allocated), each against the 8 n^2 bytes a dense float64 distance matrix
would need; time ratios against n = 256.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import time_it, write_result  # noqa: E402
from _mfm import load_yaml, model_config, train  # noqa: E402

from sciflow.data.populations import letters  # noqa: E402
from sciflow.models.meta_flow_matching import PopulationEncoder  # noqa: E402


class LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(o, torch.Tensor):
                self.max_numel = max(self.max_numel, o.numel())
        return out


def sampling(device: torch.device, repeats: int, steps: int) -> dict:
    cfg = load_yaml("mfm_letters.yaml")
    tcfg = dict(cfg["train"], steps=steps, eval_every=steps)
    kw = dict(n_points=1000, n_rotations=1, seed=0)
    tr, va, te = letters("train", **kw), letters("val", **kw), letters("test", **kw)
    model, _ = train(model_config(cfg["model"], "population", 0), tr, va.index([0]), tcfg, seed=0,
                     log=lambda *a: None)
    model = model.to(device).eval()
    batch = te.index([0]).to(device)  # one held-out population of 1000 points
    ref, _ = model.transport(batch, solver="dopri5", rtol=1e-8, atol=1e-8)
    runs = {"dopri5 rtol=1e-4": dict(solver="dopri5", rtol=1e-4, atol=1e-4),
            "dopri5 rtol=1e-6": dict(solver="dopri5", rtol=1e-6, atol=1e-6),
            "euler nfe=100": dict(solver="euler", nfe=100),
            "midpoint nfe=20": dict(solver="midpoint", nfe=20),
            "rk4 nfe=20": dict(solver="rk4", nfe=20),
            "rk4 nfe=100": dict(solver="rk4", nfe=100)}
    out = {}
    for name, kw in runs.items():
        x, stats = model.transport(batch, **kw)
        t = time_it(lambda: model.transport(batch, **kw), repeats=repeats, device=device)
        out[name] = {**t, "nfe": int(stats["nfe"]), "max_abs_err_vs_ref": float((x - ref).abs().max())}
    anchor = out["dopri5 rtol=1e-4"]["median_s"]
    for v in out.values():
        v["time_ratio_vs_dopri5_1e-4"] = v["median_s"] / anchor
    return out


def _vm_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_extra_bytes(fn, device: torch.device) -> int | None:
    """Peak memory added while ``fn()`` runs: CUDA ``max_memory_allocated`` growth, or on Linux
    the resident-set high-water mark after resetting it (``echo 5 > /proc/self/clear_refs``)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _vm_kib("VmRSS")
    fn()
    peak = _vm_kib("VmHWM")
    return None if before is None or peak is None else max(peak - before, 0) * 1024


def embedding(device: torch.device, sizes: list[int], repeats: int) -> dict:
    torch.manual_seed(0)
    enc = PopulationEncoder(2, 32, 32, 3, k=16, chunk_size=1024).to(device).eval()
    g = torch.Generator().manual_seed(0)
    with LargestTensor(), torch.no_grad():  # warm-up: first-use allocations are not the encoder's
        enc(torch.randn(1, 64, 2, generator=g).to(device))
    out = {}
    for n in sizes:
        x = torch.randn(1, n, 2, generator=g).to(device)
        probe = LargestTensor()

        def probed():
            with probe, torch.no_grad():
                enc(x)

        if n <= 4096:
            with torch.no_grad():
                t = time_it(lambda: enc(x), repeats=repeats, device=device)
            peak = peak_extra_bytes(probed, device)
        else:  # one pass: timed, probed (per-op dispatch overhead is negligible at this size)
            t0 = time.perf_counter()
            peak = peak_extra_bytes(probed, device)
            t = {"median_s": time.perf_counter() - t0, "repeats": 1}
        out[str(n)] = {**t, "largest_tensor_numel": probe.max_numel, "dense_n2": n * n,
                       "largest_over_n2": probe.max_numel / (n * n),
                       "peak_extra_mib": None if peak is None else peak / 2**20,
                       "dense_float64_n2_mib": 8 * n * n / 2**20}
    anchor = out[str(sizes[0])]["median_s"]
    for v in out.values():
        v["time_ratio_vs_smallest"] = v["median_s"] / anchor
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = max(3, int(3 * args.scale)) if args.scale >= 0.5 else 1  # smoke: one repeat
    sizes = [n for n in (256, 1024, 4096, 16384, 50000, 200000) if n <= 50000 * args.scale or n == 256]
    res = {"sampling_1000_points": sampling(device, repeats, steps=100 if args.scale >= 0.5 else 20),
           "embedding_vs_population_size": embedding(device, sizes, repeats),
           "knn": "exact k-NN (no approximation), query chunks of 1024 points: memory "
                  "O(n k + 1024 n), time O(n^2)"}
    write_result("mfm_speed", res, device=device)


if __name__ == "__main__":
    main()
