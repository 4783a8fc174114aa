"""Binder: the environment that repo2docker builds from binder/ runs the tour.

repo2docker (Python buildpack) reads binder/runtime.txt for the Python version and runs
`pip install -r binder/requirements.txt` from the repository root after copying the whole
repository (it does so because the file names a local path). The slow test does the same in a
fresh virtualenv, with nothing from the development .venv, then executes
notebooks/01_tour.ipynb in that environment's own python3 kernel with nbclient.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from browser_harness import NOTEBOOKS, REPO, TOUR, fast_env

BINDER = REPO / "binder"

# Runs inside the Binder virtualenv: execute a notebook, first reporting which python and
# which jaxvis the kernel uses.
RUNNER = """\
import sys, nbformat
from nbclient import NotebookClient
path, workdir, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(path, as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(
    "import sys, jaxvis; print(sys.executable); print(jaxvis.__file__)"))
NotebookClient(nb, timeout=timeout, kernel_name="python3",
               resources={"metadata": {"path": workdir}}).execute()
print("KERNEL", *nb.cells[0].outputs[0]["text"].split())
"""


def _requirements() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def test_binder_files():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    reqs = _requirements()
    # "." (with the demo extra) installs this repository, as a regular (not editable) install
    # so the package data (shipped weights) is checked too.
    assert ".[demo]" in reqs, reqs


def _python311() -> str:
    found = shutil.which("python3.11")
    if found:
        return found
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    pytest.fail("python3.11 not found (binder/runtime.txt pins python-3.11)")


def _clean_env(venv, tmp_path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "IPYTHON"))
    }
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env.update(fast_env())
    return env


@pytest.mark.slow
def test_binder_environment_runs_tour(tmp_path):
    if not TOUR.exists():
        pytest.fail(f"{TOUR.relative_to(REPO)} is missing")
    venv = tmp_path / "binder-venv"
    env = _clean_env(venv, tmp_path)

    t0 = time.perf_counter()
    subprocess.run([_python311(), "-m", "venv", str(venv)], check=True, env=env)
    r = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-r", "binder/requirements.txt"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    t_install = time.perf_counter() - t0
    assert r.returncode == 0, f"pip install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    t1 = time.perf_counter()
    r = subprocess.run(
        [str(venv / "bin/python"), "-c", RUNNER, str(work / TOUR.name), str(work), "900"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    t_run = time.perf_counter() - t1
    assert r.returncode == 0, f"{TOUR.name} failed in the Binder environment:\n{r.stderr[-6000:]}"
    kernel = next(line for line in r.stdout.splitlines() if line.startswith("KERNEL"))
    _, executable, jaxvis_file = kernel.split()
    assert executable.startswith(str(venv)), f"kernel ran {executable}, not the Binder venv"
    assert jaxvis_file.startswith(str(venv)), f"kernel imported jaxvis from {jaxvis_file}"
    print(f"binder: fresh venv + pip install {t_install:.0f}s, {TOUR.name} ran in {t_run:.0f}s")
