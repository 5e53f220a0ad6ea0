"""One-level DWT + inverse throughput: sciflow.nn.wavelets vs PyWavelets (anchor) and ptwt (if installed).

Measures forward ``dwtn`` + inverse ``idwtn`` (and each alone) over the last 2 axes (a WDNO-style
(time, x) trajectory batch) and the last 3 axes ((time, x, y)), in ``zero`` mode (the one mode the three
libraries share: ptwt's ``periodic`` is pywt's padding mode, not ``periodization``) and, for
sciflow and pywt, ``periodization``. Records max abs deviation from pywt (coefficients and
reconstruction) next to every timing.

    python benchmarks/wavelets.py [--scale 4] [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pywt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import time_it, write_result  # noqa: E402
from sciflow.nn.wavelets import dwtn, idwtn, subband_keys  # noqa: E402


def _ptwt():
    try:
        import ptwt

        return ptwt
    except ImportError:
        return None


def _ptwt_fwd(ptwt, x: torch.Tensor, wavelet: str, dim: int):
    if dim == 2:
        return ptwt.wavedec2(x, wavelet, mode="zero", level=1)
    return ptwt.wavedec3(x, wavelet, mode="zero", level=1)


def _ptwt_inv(ptwt, coeffs, wavelet: str, dim: int):
    return ptwt.waverec2(coeffs, wavelet) if dim == 2 else ptwt.waverec3(coeffs, wavelet)


def _ptwt_bands(coeffs, dim: int) -> dict[str, torch.Tensor]:
    if dim == 2:
        a, (h, v, d) = coeffs
        return {"aa": a, "da": h, "ad": v, "dd": d}
    a, det = coeffs
    return {"aaa": a, **det}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1, help="multiplies the batch size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ptwt = _ptwt()
    cases = {2: (8 * args.scale, 128, 128), 3: (2 * args.scale, 32, 64, 64)}
    rows = []
    for dim, shape in cases.items():
        x_np = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        x = torch.from_numpy(x_np).to(device)
        axes = tuple(range(-dim, 0))
        for wavelet in ("haar", "bior2.4", "db4"):
            for mode in ("zero", "periodization"):
                ref = pywt.dwtn(x_np, wavelet, mode=mode, axes=axes)
                row = {"dim": dim, "shape": list(shape), "wavelet": wavelet, "mode": mode}
                row["pywt_s"] = time_it(
                    lambda: pywt.idwtn(pywt.dwtn(x_np, wavelet, mode=mode, axes=axes), wavelet, mode=mode, axes=axes),
                    repeats=args.repeats,
                )["median_s"]
                c = dwtn(x, wavelet, mode, dim)
                row["sciflow_s"] = time_it(
                    lambda: idwtn(dwtn(x, wavelet, mode, dim), wavelet, mode, dim), repeats=args.repeats, device=device
                )["median_s"]
                # the two halves apart (the inverse used to dominate: transposed convolutions on CPU)
                row["pywt_fwd_s"] = time_it(lambda: pywt.dwtn(x_np, wavelet, mode=mode, axes=axes),
                                            repeats=args.repeats)["median_s"]
                row["pywt_inv_s"] = time_it(lambda: pywt.idwtn(ref, wavelet, mode=mode, axes=axes),
                                            repeats=args.repeats)["median_s"]
                row["sciflow_fwd_s"] = time_it(lambda: dwtn(x, wavelet, mode, dim), repeats=args.repeats,
                                               device=device)["median_s"]
                row["sciflow_inv_s"] = time_it(lambda: idwtn(c, wavelet, mode, dim), repeats=args.repeats,
                                               device=device)["median_s"]
                row["sciflow_max_err_vs_pywt"] = max(
                    float(np.abs(c.select(-dim - 1, i).cpu().numpy() - ref[k]).max())
                    for i, k in enumerate(subband_keys(dim))
                )
                rec_ref = pywt.idwtn(ref, wavelet, mode=mode, axes=axes)
                rec = idwtn(c, wavelet, mode, dim).cpu().numpy()
                row["sciflow_inv_max_err_vs_pywt"] = float(np.abs(rec - rec_ref).max())
                row["speedup_sciflow_vs_pywt"] = row["pywt_s"] / row["sciflow_s"]
                if ptwt is not None and mode == "zero":
                    pc = _ptwt_fwd(ptwt, x, wavelet, dim)
                    row["ptwt_s"] = time_it(
                        lambda: _ptwt_inv(ptwt, _ptwt_fwd(ptwt, x, wavelet, dim), wavelet, dim),
                        repeats=args.repeats,
                        device=device,
                    )["median_s"]
                    bands = _ptwt_bands(pc, dim)
                    row["ptwt_max_err_vs_pywt"] = max(
                        float(np.abs(bands[k].cpu().numpy() - ref[k]).max()) for k in subband_keys(dim)
                    )
                    row["speedup_sciflow_vs_ptwt"] = row["ptwt_s"] / row["sciflow_s"]
                rows.append(row)
                print(row)
    write_result(
        "wavelets",
        {"anchor": "pywt (numpy, float32 input)", "ptwt_version": getattr(ptwt, "__version__", None), "rows": rows},
        device=device,
    )


if __name__ == "__main__":
    main()
