"""Loaders for the PhysioNet/CinC Challenge 2012 and 2019 ICU files (users bring the data).

**PhysioNet 2012** — "Predicting Mortality of ICU Patients" (Silva et al., Computing in Cardiology
2012; https://physionet.org/content/challenge-2012/1.0.0/). One ``<RecordID>.txt`` per ICU stay
(folders ``set-a``, ``set-b``, ``set-c``), a CSV of ``Time,Parameter,Value`` rows with times
``HH:MM`` since ICU admission (first 48 h)::

    Time,Parameter,Value
    00:00,RecordID,132539
    00:00,Age,54
    00:00,Gender,0
    00:00,Height,-1
    00:00,ICUType,4
    00:00,Weight,-1
    00:07,GCS,15
    00:07,HR,73

The six general descriptors (``RecordID, Age, Gender, Height, ICUType, Weight``) come first at
00:00; ``-1`` marks an unknown descriptor. Later rows are the 37 time-series variables
(:data:`PHYSIONET2012_VARIABLES`); ``Weight`` is both a descriptor (first 00:00 row) and a time series
(later rows). Outcomes are in ``Outcomes-a.txt`` (``RecordID,SAPS-I,SOFA,Length_of_stay,Survival,
In-hospital_death``); the label is ``In-hospital_death`` (0/1).

**PhysioNet 2019** — "Early Prediction of Sepsis from Clinical Data" (Reyna et al., Critical Care
Medicine 2020; https://physionet.org/content/challenge-2019/1.0.0/). One ``p<ID>.psv`` per patient
(folders ``training_setA``, ``training_setB``): ``|``-separated, one header row, one row per hour,
41 columns — 8 vital signs and 26 laboratory values (the 34 time series of
:data:`PHYSIONET2019_VARIABLES`), 6 demographics (``Age, Gender, Unit1, Unit2, HospAdmTime, ICULOS``)
and the hourly ``SepsisLabel``; ``NaN`` marks a missing value. ``ICULOS`` (hours since ICU admission)
is the time axis.

Both loaders return :class:`PhysioNetData`: an :class:`~sciflow.data.batches.IrregularBatch`
(values 0 where missing, mask, times in hours, per-patient label), the static descriptors (NaN
where unknown) and the record ids. Several measurements of one variable at the same time are
averaged (as in Rubanova et al. 2019's PhysioNet preprocessing). Values are *not* normalised here;
use :func:`sciflow.data.timeseries.missing.observed_statistics` on the training part.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sciflow.data.batches import IrregularBatch

__all__ = [
    "PHYSIONET2012_DESCRIPTORS",
    "PHYSIONET2012_VARIABLES",
    "PHYSIONET2019_DEMOGRAPHICS",
    "PHYSIONET2019_VARIABLES",
    "PhysioNetData",
    "PhysioNetFormatError",
    "load_physionet2012",
    "load_physionet2019",
]

PHYSIONET2012_DESCRIPTORS: tuple[str, ...] = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
PHYSIONET2012_VARIABLES: tuple[str, ...] = (
    "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2",
    "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP",
    "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2", "SysABP", "Temp",
    "TroponinI", "TroponinT", "Urine", "WBC", "Weight",
)
PHYSIONET2019_VARIABLES: tuple[str, ...] = (
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2",
    "BaseExcess", "HCO3", "FiO2", "pH", "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos", "Calcium", "Chloride",
    "Creatinine", "Bilirubin_direct", "Glucose", "Lactate", "Magnesium", "Phosphate", "Potassium",
    "Bilirubin_total", "TroponinI", "Hct", "Hgb", "PTT", "WBC", "Fibrinogen", "Platelets",
)
PHYSIONET2019_DEMOGRAPHICS: tuple[str, ...] = ("Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS")
PHYSIONET2019_COLUMNS: tuple[str, ...] = PHYSIONET2019_VARIABLES + PHYSIONET2019_DEMOGRAPHICS + ("SepsisLabel",)


class PhysioNetFormatError(ValueError):
    """A PhysioNet file is malformed (the message names the file, line and problem)."""


@dataclass(frozen=True)
class PhysioNetData:
    """Patients as one irregular batch.

    batch: values ``(patient, time, variable)`` (0 where missing), mask, times in hours since ICU
    admission (padding repeats the last time), labels ``(patient,)`` (2012: in-hospital death;
    2019: 1 if ``SepsisLabel`` is ever 1); static: ``(patient, n_static)`` float (NaN unknown);
    record_ids: ``(patient,)``; hourly_labels: ``(patient, time)`` ``SepsisLabel`` per row (2019 only,
    −1 on padding).
    """

    batch: IrregularBatch
    static: np.ndarray
    record_ids: np.ndarray
    variables: tuple[str, ...]
    static_names: tuple[str, ...]
    hourly_labels: np.ndarray | None = None


def _hhmm(tok: str, where: str) -> float:
    parts = tok.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) >= 60:
        raise PhysioNetFormatError(f"{where}: time {tok!r} is not HH:MM")
    return int(parts[0]) + int(parts[1]) / 60.0


def _number(tok: str, where: str) -> float:
    try:
        return float(tok)
    except ValueError:
        raise PhysioNetFormatError(f"{where}: value {tok!r} is not a number") from None


def _files(folder: Path, pattern: str, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: folder {str(folder)!r} does not exist")
    files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{what}: no {pattern} files in {str(folder)!r}")
    return files


def _stack(series: list[tuple[np.ndarray, np.ndarray]], n_var: int, dtype: torch.dtype
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
    """Per-patient ``(times (T_i,), values (T_i, V) NaN-missing)`` -> padded tensors."""
    T = max(1, max(t.size for t, _ in series))
    N = len(series)
    values = np.full((N, T, n_var), np.nan)
    times = np.zeros((N, T))
    lengths = np.zeros(N, dtype=np.int64)
    for i, (t, v) in enumerate(series):
        L = t.size
        lengths[i] = L
        if L:
            values[i, :L] = v
            times[i, :L] = t
            times[i, L:] = t[-1]
    mask = ~np.isnan(values)
    return (torch.as_tensor(np.nan_to_num(values), dtype=dtype), torch.as_tensor(times, dtype=dtype),
            torch.as_tensor(mask), lengths)


def _read_2012_record(path: Path) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    index = {v: k for k, v in enumerate(PHYSIONET2012_VARIABLES)}
    static: dict[str, float] = {}
    sums: dict[float, np.ndarray] = {}
    counts: dict[float, np.ndarray] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        head = next(rows, None)
        if head is None or [h.strip() for h in head] != ["Time", "Parameter", "Value"]:
            raise PhysioNetFormatError(f"{path.name}, line 1: header must be 'Time,Parameter,Value', got {head}")
        for lineno, row in enumerate(rows, 2):
            where = f"{path.name}, line {lineno}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise PhysioNetFormatError(f"{where}: expected 3 comma-separated fields, got {len(row)}")
            t, name, raw = _hhmm(row[0], where), row[1].strip(), row[2]
            value = _number(raw, where)
            if name in PHYSIONET2012_DESCRIPTORS and name not in static and t == 0.0:
                static[name] = math.nan if value == -1 else value
                continue
            if name not in index:
                raise PhysioNetFormatError(f"{where}: unknown parameter {name!r}; "
                                           f"known: {list(PHYSIONET2012_DESCRIPTORS + PHYSIONET2012_VARIABLES)}")
            if value == -1:  # the challenge's "unknown" marker (also seen on time-series rows)
                continue
            s = sums.setdefault(t, np.zeros(len(index)))
            c = counts.setdefault(t, np.zeros(len(index)))
            s[index[name]] += value
            c[index[name]] += 1
    if "RecordID" not in static:
        raise PhysioNetFormatError(f"{path.name}: no RecordID descriptor at 00:00")
    times = np.array(sorted(sums))
    vals = np.stack([np.where(counts[t] > 0, sums[t] / np.maximum(counts[t], 1), np.nan) for t in times]) \
        if times.size else np.zeros((0, len(index)))
    return static, times, vals


def _read_outcomes(path: Path) -> dict[int, int]:
    if not path.is_file():
        raise FileNotFoundError(f"PhysioNet 2012 outcomes file {str(path)!r} does not exist")
    out: dict[int, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        head = [h.strip() for h in next(rows, [])]
        for col in ("RecordID", "In-hospital_death"):
            if col not in head:
                raise PhysioNetFormatError(f"{path.name}, line 1: no {col!r} column (got {head})")
        i_id, i_y = head.index("RecordID"), head.index("In-hospital_death")
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            where = f"{path.name}, line {lineno}"
            if len(row) != len(head):
                raise PhysioNetFormatError(f"{where}: expected {len(head)} fields, got {len(row)}")
            y = _number(row[i_y], where)
            if y not in (0, 1):
                raise PhysioNetFormatError(f"{where}: In-hospital_death must be 0 or 1, got {row[i_y]!r}")
            out[int(_number(row[i_id], where))] = int(y)
    return out


def load_physionet2012(folder: str | Path, outcomes: str | Path | None = None, *,
                       dtype: torch.dtype = torch.float32) -> PhysioNetData:
    """Read every ``*.txt`` record in ``folder`` (e.g. ``set-a``) with labels from ``outcomes``
    (default: ``Outcomes-a.txt`` beside or inside ``folder``; ``None`` found means unlabelled).

    Times are hours since admission on the union of the record's measurement times; the static
    descriptors are ``(Age, Gender, Height, ICUType, Weight)``.
    """
    folder = Path(folder)
    files = [p for p in _files(folder, "*.txt", "PhysioNet 2012") if not p.name.startswith("Outcomes")]
    if not files:
        raise FileNotFoundError(f"PhysioNet 2012: no record files in {str(folder)!r}")
    if outcomes is None:
        for cand in (folder / "Outcomes-a.txt", folder.parent / "Outcomes-a.txt"):
            if cand.is_file():
                outcomes = cand
                break
    label_of = _read_outcomes(Path(outcomes)) if outcomes is not None else None
    names = PHYSIONET2012_DESCRIPTORS[1:]
    statics, series, ids = [], [], []
    for p in files:
        st, t, v = _read_2012_record(p)
        ids.append(int(st["RecordID"]))
        statics.append([st.get(k, math.nan) for k in names])
        series.append((t, v))
    labels = None
    if label_of is not None:
        missing = [i for i in ids if i not in label_of]
        if missing:
            raise PhysioNetFormatError(f"{Path(outcomes).name}: no outcome for RecordID(s) {missing[:5]}")
        labels = torch.tensor([label_of[i] for i in ids], dtype=torch.long)
    values, times, mask, _ = _stack(series, len(PHYSIONET2012_VARIABLES), dtype)
    return PhysioNetData(IrregularBatch(values=values, times=times, mask=mask, labels=labels),
                         np.array(statics, dtype=np.float64), np.array(ids), PHYSIONET2012_VARIABLES, names)


def load_physionet2019(folder: str | Path, *, dtype: torch.dtype = torch.float32) -> PhysioNetData:
    """Read every ``*.psv`` file in ``folder`` (e.g. ``training_setA``).

    Times are ``ICULOS`` hours; the 34 vital/laboratory columns are the channels; static are
    ``(Age, Gender, Unit1, Unit2, HospAdmTime)`` from the first row; the label is 1 when
    ``SepsisLabel`` is 1 at any hour (``hourly_labels`` keeps the per-row label).
    """
    files = _files(Path(folder), "*.psv", "PhysioNet 2019")
    n_var = len(PHYSIONET2019_VARIABLES)
    statics, series, ids, hourly = [], [], [], []
    for p in files:
        with open(p, encoding="utf-8") as fh:
            lines = [ln.rstrip("\n\r") for ln in fh]
        head = lines[0].split("|") if lines else []
        if tuple(h.strip() for h in head) != PHYSIONET2019_COLUMNS:
            raise PhysioNetFormatError(f"{p.name}, line 1: header must be the 41 challenge columns "
                                       f"{'|'.join(PHYSIONET2019_COLUMNS)[:80]}..., got {'|'.join(head)[:80]!r}")
        rows = []
        for lineno, ln in enumerate(lines[1:], 2):
            if not ln.strip():
                continue
            fields = ln.split("|")
            if len(fields) != len(PHYSIONET2019_COLUMNS):
                raise PhysioNetFormatError(f"{p.name}, line {lineno}: expected {len(PHYSIONET2019_COLUMNS)} "
                                           f"'|'-separated fields, got {len(fields)}")
            rows.append([_number(f, f"{p.name}, line {lineno}") for f in fields])
        if not rows:
            raise PhysioNetFormatError(f"{p.name}: no data rows")
        a = np.array(rows)
        t = a[:, PHYSIONET2019_COLUMNS.index("ICULOS")]
        if np.isnan(t).any() or (t.size > 1 and not (np.diff(t) > 0).all()):
            raise PhysioNetFormatError(f"{p.name}: ICULOS must be present and strictly increasing")
        y = a[:, -1]
        if np.isnan(y).any() or not np.isin(y, (0, 1)).all():
            raise PhysioNetFormatError(f"{p.name}: SepsisLabel must be 0 or 1 on every row")
        series.append((t, a[:, :n_var]))
        statics.append(a[0, n_var:n_var + 5])
        hourly.append(y.astype(np.int64))
        ids.append(p.stem)
    values, times, mask, lengths = _stack(series, n_var, dtype)
    T = values.shape[1]
    hl = np.full((len(files), T), -1, dtype=np.int64)
    for i, y in enumerate(hourly):
        hl[i, : y.size] = y
    labels = torch.tensor([int(y.max()) for y in hourly], dtype=torch.long)
    return PhysioNetData(IrregularBatch(values=values, times=times, mask=mask, labels=labels),
                         np.array(statics, dtype=np.float64), np.array(ids), PHYSIONET2019_VARIABLES,
                         PHYSIONET2019_DEMOGRAPHICS[:5], hl)
