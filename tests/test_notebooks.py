"""Every notebooks/*.ipynb runs top to bottom (nbclient, the .venv's python3 kernel).

Notebooks run in a temp copy of notebooks/ (files they write stay out of the repo) with
JAXVIS_FAST=1 unless the environment sets it. A failing cell fails the test with its index,
source and traceback. JAXVIS_NB_TIMEOUT sets the per-cell timeout in seconds (default 600).
"""

from __future__ import annotations

import os
import shutil
import time

import nbformat
import pytest
from browser_harness import NOTEBOOKS, fast_env
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
CELL_TIMEOUT = int(os.environ.get("JAXVIS_NB_TIMEOUT", "600"))


def test_notebooks_exist():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_has_python3_kernelspec(path):
    # Without it JupyterLab asks which kernel to start and a headless run waits forever.
    nb = nbformat.read(path, as_version=4)
    spec = nb.metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{path.name}: metadata.kernelspec is {spec!r}"


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    for k, v in fast_env().items():
        monkeypatch.setenv(k, v)
    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    nb = nbformat.read(work / path.name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(work)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as e:
        failed = [
            (i, c)
            for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.outputs)
        ]
        where = f"cell {failed[0][0]}" if failed else "a cell"
        pytest.fail(f"{path.name}: {where} failed\n{e}", pytrace=False)
    print(f"{path.name}: ran in {time.perf_counter() - t0:.1f}s")
