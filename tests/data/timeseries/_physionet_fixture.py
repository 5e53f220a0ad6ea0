"""Write tiny synthetic PhysioNet-2012 / 2019 files in exactly the challenge formats.

Formats (see ``sciflow/data/timeseries/physionet.py`` and ``docs/datasets/irregular.md``):
2012 — https://physionet.org/content/challenge-2012/1.0.0/ (``set-a/<RecordID>.txt`` with
``Time,Parameter,Value`` rows, ``HH:MM`` times, six descriptors at 00:00, ``-1`` unknown;
``Outcomes-a.txt``); 2019 — https://physionet.org/content/challenge-2019/1.0.0/ (``p<ID>.psv``,
``|``-separated, 41 columns, hourly rows, ``NaN`` missing). The values are random numbers, not data.
The writers return the ground truth the loaders must reproduce.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sciflow.data.timeseries.physionet import (
    PHYSIONET2012_VARIABLES,
    PHYSIONET2019_COLUMNS,
    PHYSIONET2019_VARIABLES,
)


def write_physionet2012(root: Path, n: int = 4, seed: int = 0) -> dict:
    """``root/set-a/<id>.txt`` records and ``root/Outcomes-a.txt``.

    Returns ``{id: {"times": [...hours], "values": {(hour, var): value}, "static": {...},
    "death": 0/1}}``; one record has two measurements of HR at the same minute (averaged), one an
    unknown height (-1) and a later Weight time series.
    """
    rng = np.random.default_rng(seed)
    folder = root / "set-a"
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    outcome_rows = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    for k in range(n):
        rid = 132539 + k
        static = {"Age": float(rng.integers(20, 90)), "Gender": float(rng.integers(0, 2)),
                  "Height": -1.0 if k == 0 else float(rng.integers(150, 200)),
                  "ICUType": float(rng.integers(1, 5)), "Weight": float(np.round(rng.uniform(50, 120), 1))}
        lines = ["Time,Parameter,Value", f"00:00,RecordID,{rid}"]
        lines += [f"00:00,{name},{v:g}" for name, v in static.items()]
        minutes = np.sort(rng.choice(np.arange(1, 48 * 60), size=5, replace=False))
        values: dict[tuple[float, str], float] = {}
        for m in minutes:
            hh, mm = divmod(int(m), 60)
            for var in rng.choice(["HR", "Temp", "GCS", "Weight", "pH"], size=2, replace=False):
                v = float(np.round(rng.uniform(1, 100), 2))
                lines.append(f"{hh:02d}:{mm:02d},{var},{v:g}")
                values[(m / 60.0, str(var))] = v
        if k == 1:  # two HR measurements at the same minute: the loader averages them
            hh, mm = divmod(int(minutes[0]), 60)
            lines += [f"{hh:02d}:{mm:02d},HR,60", f"{hh:02d}:{mm:02d},HR,80"]
            old = values.get((minutes[0] / 60.0, "HR"))
            values[(minutes[0] / 60.0, "HR")] = (60 + 80 + old) / 3 if old is not None else 70.0
        (folder / f"{rid}.txt").write_text("\n".join(lines) + "\n")
        death = int(rng.integers(0, 2)) if k > 1 else k  # both classes present
        outcome_rows.append(f"{rid},{rng.integers(5, 20)},{rng.integers(0, 10)},{rng.integers(2, 30)},-1,{death}")
        truth[rid] = {"values": values, "static": {**static, "Height": np.nan if k == 0 else static["Height"]},
                      "death": death, "times": sorted({t for t, _ in values})}
    (root / "Outcomes-a.txt").write_text("\n".join(outcome_rows) + "\n")
    assert set(PHYSIONET2012_VARIABLES) >= {"HR", "Temp", "GCS", "Weight", "pH"}
    return truth


def write_physionet2019(folder: Path, n: int = 3, seed: int = 0) -> dict:
    """``folder/p00000<k>.psv`` files; returns ``{stem: {"table": (rows, 41) array, ...}}``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k in range(n):
        T = int(rng.integers(3, 8))
        table = np.full((T, len(PHYSIONET2019_COLUMNS)), np.nan)
        V = len(PHYSIONET2019_VARIABLES)
        obs = rng.random((T, V)) < 0.4
        table[:, :V] = np.where(obs, np.round(rng.uniform(0, 200, (T, V)), 2), np.nan)
        table[:, V:V + 5] = [rng.integers(20, 90), rng.integers(0, 2), 1, 0, -rng.uniform(0, 50)]
        table[:, V + 5] = np.arange(1, T + 1)  # ICULOS, hours
        onset = T - 2 if k == 0 else T + 1
        table[:, -1] = (np.arange(T) >= onset).astype(float)
        rows = ["|".join(PHYSIONET2019_COLUMNS)]
        rows += ["|".join("NaN" if np.isnan(x) else f"{x:g}" for x in r) for r in table]
        stem = f"p{k:06d}"
        (folder / f"{stem}.psv").write_text("\n".join(rows) + "\n")
        truth[stem] = {"table": np.array([[float("nan") if s == "NaN" else float(s) for s in r.split("|")]
                                          for r in rows[1:]]), "sepsis": int(k == 0)}
    return truth
