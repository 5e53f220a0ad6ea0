"""Reader for the UEA/UCR ``.ts`` time-series archive format (sktime/aeon).

The format (Bagnall et al., "The UEA multivariate time series classification archive, 2018",
arXiv:1811.00075; specification in the sktime/aeon ``load_from_tsfile`` documentation) is a text
file with ``#`` comment lines, a header of ``@tag value`` lines and one case per line after
``@data``::

    @problemName BasicMotions
    @timeStamps false            # true: values are written as (t,v) pairs
    @missing false               # '?' (or NaN) marks a missing value
    @univariate false
    @dimensions 6                # number of channels (aeon; optional)
    @equalLength true
    @seriesLength 100            # when equalLength is true (optional)
    @classLabel true Standing Running Walking Badminton   # or: @classLabel false
    @targetLabel true            # regression problems instead of @classLabel (optional)
    @data
    0.07,0.07,-0.90,...:0.37,0.37,2.95,...:...:Standing

Channels (dimensions) of a case are separated by ``:``, values within a channel by ``,``; the last
``:``-field is the class label (or regression target) when the header declares one. With
``@timeStamps true`` each channel is ``(t1,v1),(t2,v2),...``; ``t`` is a number or an ISO date-time
(``2007-01-01 00:00:00``, converted to seconds), and each channel may have its own times.

:func:`read_ts` returns a :class:`TSData` with ``values (sample, time, channel)`` float64, NaN where
a value is missing or the series is padded, the per-sample ``lengths``, integer ``labels`` with the
``class_names`` of the header, and — for time-stamped files — ``times (sample, time)`` on the union
of the channel times of each sample (NaN-padded). Corrupt files raise :class:`TSFormatError` with the
file, line number and what is wrong. A ``?`` in a file that declares ``@missing false`` is read
as missing (some archive files are inconsistent), not rejected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TSData", "TSFormatError", "read_ts"]

_BOOL_TAGS = ("timestamps", "missing", "univariate", "equallength")
_INT_TAGS = ("dimensions", "serieslength")
_KNOWN_TAGS = {"problemname", "classlabel", "targetlabel", "data", *_BOOL_TAGS, *_INT_TAGS}
_PAIR = re.compile(r"\(([^()]*)\)")


class TSFormatError(ValueError):
    """A ``.ts`` file violates the format; the message names the file and line."""


@dataclass(frozen=True)
class TSData:
    """A UEA/UCR problem read from ``.ts`` files.

    values: ``(sample, time, channel)`` float64, NaN where missing or padded (``time`` is the
    longest series); lengths: ``(sample,)`` int64, number of time points of each sample (the
    longest channel); labels: ``(sample,)`` int64 indices into ``class_names`` (``None`` without
    ``@classLabel true``); targets: ``(sample,)`` float64 regression targets (``@targetLabel``);
    times: ``(sample, time)`` float64 time stamps (``None`` unless ``@timeStamps true``; NaN-padded).
    """

    name: str
    values: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    targets: np.ndarray | None = None
    times: np.ndarray | None = None
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @staticmethod
    def concatenate(parts: "list[TSData]") -> "TSData":
        """Stack problems with the same channels and class names (e.g. TRAIN + TEST)."""
        if not parts:
            raise ValueError("TSData.concatenate: empty list")
        first = parts[0]
        for p in parts[1:]:
            if p.n_channels != first.n_channels:
                raise ValueError(f"TSData.concatenate: {p.name} has {p.n_channels} channels, "
                                 f"{first.name} has {first.n_channels}")
            if p.class_names != first.class_names:
                raise ValueError(f"TSData.concatenate: class names differ: {p.class_names} vs {first.class_names}")
            if (p.times is None) != (first.times is None):
                raise ValueError("TSData.concatenate: cannot mix time-stamped and plain files")
        T = max(p.values.shape[1] for p in parts)
        values = np.concatenate([_pad(p.values, T) for p in parts])
        times = None if first.times is None else np.concatenate([_pad(p.times, T) for p in parts])
        cat = lambda k: (None if getattr(first, k) is None  # noqa: E731
                         else np.concatenate([getattr(p, k) for p in parts]))
        return TSData(first.name, values, cat("lengths"), cat("labels"), first.class_names, cat("targets"),
                      times, dict(first.header))


def _pad(a: np.ndarray, T: int) -> np.ndarray:
    if a.shape[1] == T:
        return a
    pad = [(0, 0)] * a.ndim
    pad[1] = (0, T - a.shape[1])
    return np.pad(a, pad, constant_values=np.nan)


def _split_top(line: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (time stamps may contain ``:`` and ``,``)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(line[start:i])
            start = i + 1
    out.append(line[start:])
    return out


def _float(tok: str, where: str) -> float:
    tok = tok.strip()
    if tok in ("?", "") or tok.lower() == "nan":
        return math.nan
    try:
        return float(tok)
    except ValueError:
        raise TSFormatError(f"{where}: {tok[:40]!r} is not a number (missing values are written '?')") from None


def _time(tok: str, where: str) -> float:
    tok = tok.strip()
    try:
        return float(tok)
    except ValueError:
        pass
    try:
        return float(np.datetime64(tok.replace(" ", "T"), "s").astype(np.int64))
    except ValueError:
        raise TSFormatError(f"{where}: time stamp {tok!r} is neither a number nor an ISO date-time") from None


def _channel(text: str, stamped: bool, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    text = text.strip()
    if not stamped:
        if not text:
            return np.empty(0), None
        return np.array([_float(t, where) for t in text.split(",")]), None
    pairs = _PAIR.findall(text)
    rest = _PAIR.sub("", text).replace(",", "").strip()
    if rest:
        raise TSFormatError(f"{where}: expected (time,value) pairs, found stray text {rest[:40]!r}")
    ts, vs = [], []
    for p in pairs:
        # the value is after the last comma (a date-time stamp contains no comma)
        if "," not in p:
            raise TSFormatError(f"{where}: time-stamped pair ({p}) has no ','")
        t, v = p.rsplit(",", 1)
        ts.append(_time(t, where))
        vs.append(_float(v, where))
    t = np.array(ts)
    if t.size > 1 and not bool((np.diff(t) > 0).all()):
        raise TSFormatError(f"{where}: time stamps are not strictly increasing")
    return np.array(vs), t


def _parse_header(tag: str, rest: str, where: str, header: dict[str, Any]) -> None:
    key = tag.lower()
    if key not in _KNOWN_TAGS:
        raise TSFormatError(f"{where}: unknown header tag @{tag}; known: {sorted(_KNOWN_TAGS)}")
    words = rest.split()
    if key == "problemname":
        header["problemname"] = rest.strip()
    elif key in _BOOL_TAGS:
        if len(words) != 1 or words[0].lower() not in ("true", "false"):
            raise TSFormatError(f"{where}: @{tag} must be 'true' or 'false', got {rest.strip()!r}")
        header[key] = words[0].lower() == "true"
    elif key in _INT_TAGS:
        if len(words) != 1 or not words[0].isdigit() or int(words[0]) < 1:
            raise TSFormatError(f"{where}: @{tag} must be a positive integer, got {rest.strip()!r}")
        header[key] = int(words[0])
    elif key in ("classlabel", "targetlabel"):
        if not words or words[0].lower() not in ("true", "false"):
            raise TSFormatError(f"{where}: @{tag} must start with 'true' or 'false', got {rest.strip()!r}")
        on = words[0].lower() == "true"
        if key == "classlabel":
            if on and len(words) < 2:
                raise TSFormatError(f"{where}: @classLabel true must list the class names")
            if len(set(words[1:])) != len(words[1:]):
                raise TSFormatError(f"{where}: @classLabel lists a class twice: {words[1:]}")
            header["classlabel"] = on
            header["class_names"] = tuple(words[1:]) if on else ()
        else:
            header["targetlabel"] = on


def read_ts(path: str | Path, *, name: str | None = None) -> TSData:
    """Read one ``.ts`` file (see the module docstring for the format).

    Args:
        path: the file.
        name: problem name to report (default: ``@problemName`` or the file stem).

    Returns:
        :class:`TSData`. Unequal-length series are NaN-padded at the end to the longest one.

    Raises:
        FileNotFoundError: no such file.
        TSFormatError: a header or data line is malformed (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no .ts file at {str(path)!r}")
    header: dict[str, Any] = {}
    cases: list[list[np.ndarray]] = []
    stamps: list[list[np.ndarray]] = []
    raw_labels: list[str] = []
    in_data = False
    n_dims: int | None = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{path.name}, line {lineno}"
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise TSFormatError(f"{where}: expected a '@tag' header line or '@data' before data, "
                                        f"got {line[:40]!r}")
                tag, _, rest = line[1:].partition(" ")
                if tag.lower() == "data":
                    in_data = True
                    continue
                _parse_header(tag, rest, where, header)
                continue
            if line.startswith("@"):
                raise TSFormatError(f"{where}: header line {line[:40]!r} after @data")
            stamped = bool(header.get("timestamps", False))
            fields = _split_top(line, ":")
            labelled = header.get("classlabel", False) or header.get("targetlabel", False)
            if labelled:
                if len(fields) < 2:
                    raise TSFormatError(f"{where}: expected channels and a label separated by ':', got one field")
                raw_labels.append(fields[-1].strip())
                fields = fields[:-1]
            if n_dims is None:
                n_dims = len(fields)
                declared = header.get("dimensions")
                if declared is None and header.get("univariate") is True:
                    declared = 1
                if declared is not None and declared != n_dims:
                    raise TSFormatError(
                        f"{where}: header declares {declared} dimension(s), the first case has {n_dims}")
            elif len(fields) != n_dims:
                raise TSFormatError(f"{where}: case has {len(fields)} dimension(s), earlier cases have {n_dims}")
            chans, ts = [], []
            for c, f in enumerate(fields):
                v, t = _channel(f, stamped, f"{where}, dimension {c}")
                if v.size == 0:
                    raise TSFormatError(f"{where}, dimension {c}: empty series")
                chans.append(v)
                ts.append(t)
            cases.append(chans)
            stamps.append(ts)
    if not in_data:
        raise TSFormatError(f"{path.name}: no @data line (not a .ts file, or truncated header)")
    if not cases:
        raise TSFormatError(f"{path.name}: @data section holds no cases")
    problem = name or header.get("problemname") or path.stem
    stamped = bool(header.get("timestamps", False))
    if stamped:
        values, times, lengths = _merge_stamped(cases, stamps)
    else:
        lengths = np.array([max(len(c) for c in chans) for chans in cases], dtype=np.int64)
        times = None
        values = np.full((len(cases), int(lengths.max()), n_dims or 1), np.nan)
        for i, chans in enumerate(cases):
            for c, v in enumerate(chans):
                values[i, : len(v), c] = v
    if header.get("equallength") is True and not stamped and len(set(lengths.tolist())) > 1:
        i = int(np.argmax(lengths != lengths[0]))
        raise TSFormatError(
            f"{path.name}: @equalLength true but case {i} has {lengths[i]} points, case 0 has {lengths[0]}")
    if "serieslength" in header and header.get("equallength") is True and int(lengths[0]) != header["serieslength"]:
        raise TSFormatError(
            f"{path.name}: @seriesLength {header['serieslength']} but the cases have {lengths[0]} points")
    labels = targets = None
    class_names: tuple[str, ...] = tuple(header.get("class_names", ()))
    if header.get("classlabel"):
        index = {c: k for k, c in enumerate(class_names)}
        bad = [(k, lab) for k, lab in enumerate(raw_labels) if lab not in index]
        if bad:
            k, lab = bad[0]
            raise TSFormatError(f"{path.name}: case {k} has class label {lab!r}, not among the declared "
                                f"@classLabel names {list(class_names)}")
        labels = np.array([index[lab] for lab in raw_labels], dtype=np.int64)
    elif header.get("targetlabel"):
        targets = np.array([_float(lab, f"{path.name}, case {k} target") for k, lab in enumerate(raw_labels)])
    return TSData(problem, values, lengths, labels, class_names, targets, times, header)


def _merge_stamped(cases, stamps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, put all channels on the union of their time stamps (NaN where a channel has
    no value at a time)."""
    grids = [np.unique(np.concatenate(ts)) for ts in stamps]
    lengths = np.array([g.size for g in grids], dtype=np.int64)
    T, C = int(lengths.max()), len(cases[0])
    values = np.full((len(cases), T, C), np.nan)
    times = np.full((len(cases), T), np.nan)
    for i, (chans, ts, g) in enumerate(zip(cases, stamps, grids)):
        times[i, : g.size] = g
        for c, (v, t) in enumerate(zip(chans, ts)):
            values[i, np.searchsorted(g, t), c] = v
    return values, times, lengths
