"""The documentation site builds with zero warnings, shows the notebooks with their pictures, and
gives every public name an entry (slow: executes every notebook unless docs/notebooks/ already
holds current runs, as after `make docs`).

The build is `mkdocs build --strict` of a copy of docs/ into a temp dir, as `make docs` runs it.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["attribution", "concepts", "dataset", "optvis", "render", "training", "widgets", "zoo"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "scripts/execute_notebooks.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert run.returncode == 0, (
        f"executing the notebooks failed:\n{run.stdout}\n{run.stderr[-4000:]}"
    )
    print(run.stdout)
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-6000:]}"
    warnings = [line for line in build.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, warnings
    return out


def test_every_notebook_page_shows_its_output_pictures(site):
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        page = site / "notebooks" / nb.stem / "index.html"
        assert page.exists(), f"{nb.name} has no page on the site"
        html = page.read_text()
        pictures = re.findall(r'<img[^>]+src="data:image/(?:png|gif);base64,', html)
        # Widgets show as their static snapshot (jv.widgets.save_html's page in an iframe).
        snapshots = html.count('class="jv-widget-snapshot"')
        assert pictures or snapshots, f"{nb.name}: its page has no output pictures"
        if nb.stem in ("01_tour", "dashboard"):
            assert snapshots and "data:image/png;base64" in html, f"{nb.name}: no widget pictures"


def test_every_public_name_has_an_api_entry(site):
    for package in ["jaxvis", *PACKAGES]:
        module = importlib.import_module("jaxvis" if package == "jaxvis" else f"jaxvis.{package}")
        html = (site / "api" / package / "index.html").read_text()
        ids = set(re.findall(r'id="([^"]+)"', html))
        missing = [n for n in module.__all__ if not any(i == n or i.endswith(f".{n}") for i in ids)]
        assert not missing, f"jaxvis.{package}: no API entry for {missing}"


def test_every_docs_page_is_in_the_navigation(site):
    index = (site / "index.html").read_text()
    for page in sorted((REPO / "docs").rglob("*.md")):
        rel = page.relative_to(REPO / "docs").with_suffix("")
        url = "." if rel.as_posix() == "index" else f"{rel.as_posix()}/"
        assert f'href="{url}"' in index, f"{rel} is not in the nav"


def test_the_guide_shows_the_readme_pictures(site):
    home = (site / "index.html").read_text()
    for name in ("feature_vis.png", "attribution.png", "layer_grid.png", "unit_view.png"):
        assert f"img/{name}" in home
        assert (site / "img" / name).stat().st_size > 1000
