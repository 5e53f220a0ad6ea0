"""Every fenced ```python block of the documentation (``docs/**/*.md`` and ``README.md``) runs.

The blocks of one page run in order in one namespace (later blocks may use earlier names), in a
temporary working directory, with one intra-op thread. A block that cannot run here opts out with
an HTML comment on the line just before its fence, naming why:

    <!-- docs-test: skip gpu -->        (needs CUDA)
    <!-- docs-test: skip torchrun -->   (needs a multi-process launch)
    <!-- docs-test: skip download -->   (needs network access or data not shipped)
    <!-- docs-test: skip slow -->       (minutes of CPU; runs under ``-m slow``)

A block that is a fragment (it uses names a reader has from the surrounding text) gets its
context from a hidden set-up comment just before it, run first and not shown on the page:

    <!-- docs-test: setup
    ds = sciflow.data.pdes.burgers.generate(n=2, n_time=5, nx=32, seed=0)
    -->

The opt-outs are counted (:func:`test_opt_outs_are_few_and_named`). A page whose examples take
long marks itself with ``<!-- docs-test: slow-page -->`` anywhere in the page: its blocks then run
under ``-m slow`` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REASONS = ("gpu", "torchrun", "download", "slow")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)$")
MARK = re.compile(r"<!--\s*docs-test:\s*skip\s+(?P<reason>[\w-]+)\s*-->")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # opt-out reason
    setup: str = ""  # hidden context from a ``docs-test: setup`` comment


def pages() -> list[Path]:
    return sorted([*(REPO / "docs").rglob("*.md"), REPO / "README.md"])


def blocks(path: Path) -> list[Block]:
    """The fenced ``python`` blocks of a Markdown page, with their opt-out reasons."""
    lines = path.read_text().splitlines()
    out, i, setup = [], 0, ""
    rel = str(path.relative_to(REPO))
    while i < len(lines):
        if lines[i].lstrip().startswith("<!-- docs-test: setup"):
            j = i + 1
            while j < len(lines) and "-->" not in lines[j]:
                j += 1
            setup = "\n".join(lines[i + 1:j])
            i = j + 1
            continue
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        info, indent = m["info"].strip(), m["indent"]
        j = i + 1
        while j < len(lines) and not (lines[j].strip() == "```" and lines[j].startswith(indent)):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{rel}:{i + 1}: unclosed code fence")
        if info.split(" ")[0] in ("python", "py"):
            prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mk = MARK.search(prev)
            code = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j])
            out.append(Block(rel, i + 1, code, mk["reason"] if mk else None, setup))
            setup = ""
        i = j + 1
    return out


ALL = {str(p.relative_to(REPO)): blocks(p) for p in pages()}
SLOW_PAGES = {k for k in ALL if "docs-test: slow-page" in (REPO / k).read_text()}


def _params():
    for page, bl in ALL.items():
        if not any(b.skip is None for b in bl):
            continue
        marks = [pytest.mark.slow] if page in SLOW_PAGES else []
        yield pytest.param(page, id=page, marks=marks)


@pytest.mark.parametrize("page", list(_params()))
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    import sys
    import types

    module = types.ModuleType("__docs__")  # a real module: dataclasses and pickling look it up
    sys.modules["__docs__"] = module
    ns = module.__dict__
    try:
        for b in ALL[page]:
            if b.skip is not None:
                continue
            try:
                if b.setup:
                    exec(compile(b.setup, f"{b.page}:{b.line} (set-up)", "exec"), ns)
                exec(compile(b.code, f"{b.page}:{b.line}", "exec"), ns)
            except Exception as e:  # name the block so the page is easy to fix
                raise AssertionError(f"{b.page}, code block at line {b.line} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.modules.pop("__docs__", None)
        torch.set_num_threads(threads)
        import matplotlib.pyplot as plt

        plt.close("all")


def test_opt_outs_are_few_and_named() -> None:
    total = sum(len(bl) for bl in ALL.values())
    skipped = [b for bl in ALL.values() for b in bl if b.skip is not None]
    bad = [f"{b.page}:{b.line} ({b.skip})" for b in skipped if b.skip not in REASONS]
    assert not bad, f"opt-out reasons must be one of {REASONS}: {bad}"
    assert total >= 20, f"only {total} python blocks found in the docs"
    # opt-outs stay the exception: at most one in five blocks
    assert len(skipped) <= total // 5, [f"{b.page}:{b.line} ({b.skip})" for b in skipped]


def test_the_block_parser(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("text\n```python\nx = 1\n```\n\n<!-- docs-test: skip gpu -->\n```python\ny = x.cuda()\n```\n"
                    "```bash\nls\n```\n1. item\n<!-- docs-test: setup\nw = 3\n-->\n    ```python\n    z = 2\n    ```\n")
    global REPO
    old, REPO = REPO, tmp_path
    try:
        bl = blocks(page)
    finally:
        REPO = old
    assert [(b.code, b.skip, b.setup) for b in bl] == [("x = 1", None, ""), ("y = x.cuda()", "gpu", ""),
                                                       ("z = 2", None, "w = 3")]
