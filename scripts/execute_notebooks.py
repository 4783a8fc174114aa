"""Execute the notebooks for the documentation site, with their outputs (pictures included).

Each ``notebooks/*.ipynb`` runs in a fresh kernel (``JAXVIS_FAST=1`` unless set) from a temp
copy of the folder, and the executed copy is written to ``OUT/<name>.ipynb`` (default
``docs/notebooks``, ignored by git) with a static snapshot of each widget, so MkDocs renders it
without running it again. A notebook whose source and jaxvis's source are unchanged since the
last run is not run again (the key is kept in the notebook's metadata).

Example::

    python scripts/execute_notebooks.py                # every notebook, cached
    python scripts/execute_notebooks.py --out /tmp/nb 01_tour.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_OUT = REPO / "docs" / "notebooks"  # ignored by git; mkdocs-jupyter renders it


def source_key(path: Path) -> str:
    """Hash of the notebook, this script and every file of the jaxvis package."""
    h = hashlib.sha256(path.read_bytes())
    h.update(Path(__file__).read_bytes())  # how they are run and post-processed
    for f in sorted((REPO / "jaxvis").rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(f.relative_to(REPO).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _gifs_as_html(nb: nbformat.NotebookNode) -> None:
    """nbconvert's HTML templates drop ``image/gif`` outputs: add an ``<img>`` for each."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/gif" in data and "text/html" not in data:
                gif = "".join(data["image/gif"]).replace("\n", "")
                data["text/html"] = f'<img src="data:image/gif;base64,{gif}" alt="animation">'


# Run in the kernel after the notebook: every live widget's snapshot (jv.widgets.save_html's
# page), so the site shows the widgets' pictures; the html-manager a page would need to render
# the stored widget state comes from a CDN and shows nothing offline.
_SNAPSHOT_CELL = """
import json as _json
from ipywidgets.widgets.widget import _instances as _live
from jaxvis.widgets._export import html_page as _page
_kids = {id(c) for w in list(_live.values()) for c in getattr(w, "children", ()) or ()}
print("JV_SNAPSHOTS" + _json.dumps({k: _page(w) for k, w in list(_live.items())
                                    if getattr(w, "_dom_classes", None) is not None
                                    and id(w) not in _kids}))
"""


def _snapshots_as_html(nb: nbformat.NotebookNode) -> None:
    """Give each widget output the snapshot of its widget (an isolated ``<iframe>``)."""
    cell = nb.cells.pop()
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    pages = json.loads(text.split("JV_SNAPSHOTS", 1)[1]) if "JV_SNAPSHOTS" in text else {}
    for c in nb.cells:
        for out in c.get("outputs", []):
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view and view.get("model_id") in pages:
                doc = html.escape(pages[view["model_id"]], quote=True)
                out["data"]["text/html"] = (
                    f'<iframe class="jv-widget-snapshot" srcdoc="{doc}" style="width:100%;'
                    'height:480px;border:1px solid #ddd" onload="this.style.height='
                    "(this.contentDocument.body.scrollHeight+24)+'px'\"></iframe>"
                )
                del out["data"]["application/vnd.jupyter.widget-view+json"]


def execute(path: Path, out_dir: Path, timeout: int = 900) -> tuple[str, float, bool]:
    """Run one notebook into ``out_dir``; returns (name, seconds, ran)."""
    key = source_key(path)
    target = out_dir / path.name
    if target.exists():
        done = nbformat.read(target, as_version=4)
        if done.metadata.get("jaxvis_docs_key") == key:
            return path.name, 0.0, False
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="jv-docs-nb-"))
    try:
        shutil.copytree(NOTEBOOKS, work / "notebooks", ignore=shutil.ignore_patterns(".ipynb*"))
        nb = nbformat.read(work / "notebooks" / path.name, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(_SNAPSHOT_CELL))
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(work / "notebooks")}},
        ).execute()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _snapshots_as_html(nb)
    _gifs_as_html(nb)
    nb.metadata["jaxvis_docs_key"] = key
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return path.name, time.perf_counter() - t0, True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="notebook file names (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--jobs", type=int, default=2, help="kernels at once")
    args = ap.parse_args(argv)
    os.environ.setdefault("JAXVIS_FAST", "1")
    paths = [NOTEBOOKS / n for n in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        ap.error(f"no such notebooks: {missing}")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, seconds, ran in pool.map(lambda p: execute(p, args.out), paths):
            print(f"{name}: " + (f"ran in {seconds:.0f} s" if ran else "unchanged"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
