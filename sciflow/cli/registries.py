"""The registries the command line resolves names in: models, data generators, solvers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping


def _write_json(obj: Any, path: Path) -> None:
    from sciflow.data.io import write_json  # strict JSON (non-finite → "inf"/"nan"), atomic

    write_json(obj, path)


def _models() -> Mapping[str, type]:
    from sciflow.models.registry import MODELS

    return MODELS


def _generators() -> Mapping[str, Callable[..., Any]]:
    try:
        from sciflow.data.registry import GENERATORS
    except ImportError:  # the data subsystem is optional for listing
        return {}
    return GENERATORS


def _solvers() -> Mapping[str, type]:
    try:
        from sciflow.solvers.registry import SOLVERS
    except ImportError:
        return {}
    return SOLVERS


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :class:`~a.b.C` -> C (the last dotted part)
_ABBREVIATIONS = {"al", "eq", "Eq", "Sec", "Alg", "J", "Numer", "Anal", "Comput", "Phys", "Math", "Stat",
                  "e.g", "i.e", "cf"}


def _first_sentence(text: str) -> str:
    """Up to the first full stop followed by a word that is outside parentheses and not the
    one of a citation abbreviation ("et al.", "J. Comput. Phys.", "eq.")."""
    for m in re.finditer(r"\.\s+(?=[A-Za-z])", text):
        head = text[: m.start()]
        if head.count("(") == head.count(")") and (head.split() or [""])[-1].lstrip("(\"'") not in _ABBREVIATIONS:
            return head + "."
    return text


def _first_line(obj: Any, width: int = 100) -> str:
    """The docstring's first sentence as plain text (reST roles and literals unwrapped), for
    ``sciflow list``; cut at ``width`` characters with an ellipsis."""
    para = (getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0]
    text = " ".join(para.split())
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("``", "")
    text = _first_sentence(text)
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


