"""The curated top-level API resolves, and ``import sciflow`` stays lazy."""

from __future__ import annotations

import subprocess
import sys

import sciflow


def test_every_public_name_resolves() -> None:
    missing = []
    for name in sciflow.__all__:
        try:
            getattr(sciflow, name)
        except Exception as exc:  # pragma: no cover - the assertion reports it
            missing.append(f"{name}: {exc!r}")
    assert not missing, "unresolvable public names:\n" + "\n".join(missing)


def test_import_is_lazy() -> None:
    code = "import sys, sciflow; print(any(m.startswith('sciflow.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
