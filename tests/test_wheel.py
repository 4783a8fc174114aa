"""The built wheel works outside the repository (slow: builds, installs, runs the tour).

``python -m build`` makes an sdist and, from it, a wheel; ``twine check`` accepts both. The wheel
is installed (not editable) with its ``demo`` extras into a fresh virtualenv in a temp dir (no
``--system-site-packages``: its dependencies come from the package index, about 3 minutes on
the CI machine, faster with pip's cache), and ``notebooks/01_tour.ipynb`` runs there from a temp
dir outside the repository. A first cell added to the notebook checks, inside that kernel, that
``jaxvis`` and its shipped weights and widget front-end (the anywidget ES module) are the
installed package's files, and the tour's own cells load the weights and build the widgets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

CHECK_CELL = """
import json, pathlib, sys
import jaxvis, jaxvis.widgets, jaxvis.zoo.weights as zw
from jaxvis.widgets import channel_grid
prefix = pathlib.Path(sys.prefix).resolve()
facts = {
    "prefix": str(prefix),
    "jaxvis": str(pathlib.Path(jaxvis.__file__).resolve()),
    "weights": sorted(str(p.resolve()) for p in zw.WEIGHTS_DIR.glob("*.npz")),
    "esm_file": str(pathlib.Path(channel_grid._ESM).resolve()),
    "esm_loaded": jaxvis.widgets.ChannelGrid()._esm == pathlib.Path(channel_grid._ESM).read_text(),
    "version": jaxvis.__version__,
    "typed": (pathlib.Path(jaxvis.__file__).parent / "py.typed").exists(),
}
print("JV_FACTS " + json.dumps(facts))
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_installs_and_runs_the_tour_outside_the_repo(tmp_path):
    work = Path(tempfile.mkdtemp(prefix="jv-wheel-"))  # outside the repository
    assert REPO not in work.parents
    try:
        t0 = time.perf_counter()
        dist = work / "dist"
        # From the sdist, so the sdist must hold everything the wheel needs.
        _run([sys.executable, "-m", "build", "--no-isolation", "-o", str(dist), str(REPO)])
        wheels = sorted(dist.glob("jaxvis-*.whl"))
        sdists = sorted(dist.glob("jaxvis-*.tar.gz"))
        assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
        _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)])
        names = zipfile.ZipFile(wheels[0]).namelist()
        for want in (
            "jaxvis/zoo/weights/mnist_cnn.npz",
            "jaxvis/zoo/weights/shapes_cnn.npz",
            "jaxvis/widgets/channel_grid.js",
            "jaxvis/py.typed",
        ):
            assert want in names, f"{want} is not in the wheel"
        assert any(n.endswith("licenses/LICENSE") for n in names)
        built = time.perf_counter() - t0

        venv = work / "venv"
        # Nothing of this process's environment may leak in: with PYTHONPATH at the checkout,
        # pip would take its jaxvis.egg-info for an installed jaxvis and skip the wheel.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUPYTER", "PYTHON", "VIRTUAL_ENV", "IPYTHON", "JAXVIS"))
        }
        env.update(
            VIRTUAL_ENV=str(venv),
            PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            JAXVIS_FAST="1",
            JAXVIS_CACHE=str(work / "cache"),
            JUPYTER_PREFER_ENV_PATH="1",
            JUPYTER_PLATFORM_DIRS="1",
            IPYTHONDIR=str(work / "ipython"),
        )
        _run([sys.executable, "-m", "venv", str(venv)], env=env)
        py = venv / "bin" / "python"
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(
            [*pip, f"{wheels[0]}[demo]", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
            env=env,
            cwd=work,
        )
        installed = time.perf_counter() - t0 - built

        nb = json.loads((REPO / "notebooks" / "01_tour.ipynb").read_text())
        check = {
            "cell_type": "code",
            "execution_count": None,
            "id": "jv-wheel-check",
            "metadata": {},
            "outputs": [],
            "source": CHECK_CELL,
        }
        nb["cells"].insert(0, check)
        run_dir = work / "run"
        run_dir.mkdir()
        (run_dir / "tour.ipynb").write_text(json.dumps(nb))
        runner = (
            "import nbformat, sys\n"
            "from nbclient import NotebookClient\n"
            "nb = nbformat.read('tour.ipynb', as_version=4)\n"
            "NotebookClient(nb, timeout=600, kernel_name='python3').execute()\n"
            "nbformat.write(nb, 'tour.out.ipynb')\n"
        )
        where = _run([str(py), "-c", "import jaxvis; print(jaxvis.__file__)"], cwd=run_dir, env=env)
        assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve()), where.stdout
        _run([str(py), "-c", runner], cwd=run_dir, env=env, timeout=900)
        ran = time.perf_counter() - t0 - built - installed
        print(f"wheel: build {built:.0f} s, install {installed:.0f} s, tour {ran:.0f} s")

        out = nbformat.read(run_dir / "tour.out.ipynb", as_version=4)  # joins multi-line text
        text = "".join(
            o.get("text", "") for o in out["cells"][0]["outputs"] if o["output_type"] == "stream"
        )
        facts = json.loads(text.split("JV_FACTS ", 1)[1])
        prefix = Path(facts["prefix"])
        assert prefix == venv.resolve(), facts
        loaded = {"jaxvis": facts["jaxvis"], "the ES module": facts["esm_file"]}
        loaded.update({f"weights {Path(w).name}": w for w in facts["weights"]})
        for what, path in loaded.items():
            assert prefix in Path(path).parents, f"{what} loaded from {path}, not the wheel"
            assert REPO not in Path(path).parents
        assert len(facts["weights"]) == 2 and facts["esm_loaded"] and facts["typed"]
        assert wheels[0].name.startswith(f"jaxvis-{facts['version']}-")  # one version
        errors = [
            o for c in out["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
        ]
        assert not errors, errors
        widgets = [
            c
            for c in out["cells"]
            for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        ]
        assert len(widgets) >= 5  # the tour's explorers, filter grids and histograms
    finally:
        shutil.rmtree(work, ignore_errors=True)
