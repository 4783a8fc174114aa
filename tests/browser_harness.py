"""Drive JupyterLab in headless Chromium: the shared harness of tests/test_browser.py and
benchmarks/latency.py.

The recipe is /work/shared/BROWSER_TESTING.md (proven on this kind of machine):

* JupyterLab runs in its own process session on a free loopback port with a random token, with
  every Jupyter/IPython directory pointed at a temp dir, and is stopped by its PID
  (``POST /api/shutdown``, then SIGTERM), together with any kernel that outlives it.
* Playwright drives Debian's ``/usr/bin/chromium`` (never ``playwright install``) through a
  persistent context with the flags that keep Chromium off the network.
* Assertions are DOM facts read with small JS snippets; latency is measured on the page's own
  clock (``performance.now()`` on keydown, a ``MutationObserver`` on the ``<img>`` ``src``).

Nothing here knows about jaxvis: selectors and notebooks are arguments.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TOUR = NOTEBOOKS / "01_tour.ipynb"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 1000}


def fast_env() -> dict[str, str]:
    """Environment for notebook kernels in tests: JAXVIS_FAST=1 unless the caller set it; no
    persistent compilation cache (neither jaxvis's opt-in store nor JAX's), as a user gets it."""
    return {"JAXVIS_FAST": os.environ.get("JAXVIS_FAST", "1")}


def browser_unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        how = (
            "install Debian's chromium (`sudo apt-get install chromium`; `make test` does it "
            "when run as root)"
            if os.geteuid() != 0
            else "`apt-get install chromium` (make test does this as root)"
        )
        return f"{CHROMIUM} is absent: {how}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may contain spaces, so split after the last ")".
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------- JupyterLab


@dataclass
class JupyterLab:
    """A JupyterLab server on loopback serving a temp copy of some notebooks.

    Use as a context manager: ``with JupyterLab([nb_path], env={"JAXVIS_FAST": "1"}) as lab``.
    ``lab.url(path)`` is the authenticated URL of a file under the root dir.
    """

    notebooks: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    root: Path = field(init=False)
    port: int = field(init=False, default=0)
    token: str = field(init=False, default="")
    proc: subprocess.Popen | None = field(init=False, default=None)
    log_path: Path = field(init=False)
    startup_seconds: float = field(init=False, default=0.0)
    _tmp: Path = field(init=False)

    def __enter__(self) -> JupyterLab:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="jv-lab-"))
        self.root = self._tmp / "root"
        self.root.mkdir()
        for nb in self.notebooks:
            shutil.copy(nb, self.root / Path(nb).name)
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "IPYTHONDIR": "ipython",
        }
        env = dict(os.environ)
        for var, name in dirs.items():
            (self._tmp / name).mkdir()
            env[var] = str(self._tmp / name)
        env["JUPYTER_PREFER_ENV_PATH"] = "1"
        env.update(self.env)
        settings = self._tmp / "settings"
        _write_json(
            settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
            {"fetchNews": "false", "checkForUpdates": False},
        )
        # Attach every cell to the DOM, so off-screen widgets exist for the assertions.
        _write_json(
            settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        self.port = free_port()
        self.token = secrets.token_hex(16)
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--expose-app-in-browser",
            "--LabApp.news_url=",
        ]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log_path = self._tmp / "jupyterlab.log"
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self._api("/api/status"), timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"jupyter lab did not answer in {self.startup_timeout}s")
            time.sleep(0.2)
        self.startup_seconds = time.perf_counter() - t0

    def _api(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?token={self.token}&reset"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            kids = _children(proc.pid)  # kernels run in sessions of their own
            try:
                req = urllib.request.Request(self._api("/api/shutdown"), method="POST")
                urllib.request.urlopen(req, timeout=5).close()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for pid in kids:
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# ------------------------------------------------------------------------------------ browser


@contextlib.contextmanager
def chromium() -> Iterator:
    """A Playwright persistent browser context on Debian's Chromium; yields the context."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="jv-chromium-")
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=VIEWPORT,
            )
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


_JS_NOTEBOOK = "window.jupyterapp && window.jupyterapp.shell.currentWidget"

_JS_KERNEL_STATUS = f"""() => {{
  const w = {_JS_NOTEBOOK};
  const k = w && w.sessionContext && w.sessionContext.session
            && w.sessionContext.session.kernel;
  return k ? k.status : null;
}}"""
_JS_KERNEL_IDLE = f"() => ({_JS_KERNEL_STATUS})() === 'idle'"
_JS_KERNEL_IDLE_OR_DEAD = f"() => ['idle', 'dead'].includes(({_JS_KERNEL_STATUS})())"


# Errors in executed cells: [{cell, ename, evalue, traceback}], tracebacks without ANSI codes.
_JS_CELL_ERRORS = f"""() => {{
  const w = {_JS_NOTEBOOK};
  const out = [];
  w.content.widgets.forEach((cell, i) => {{
    if (cell.model.type !== 'code') return;
    const outputs = cell.model.sharedModel.outputs || [];
    for (const o of outputs) {{
      if (o.output_type === 'error') {{
        out.push({{cell: i, ename: o.ename, evalue: o.evalue,
                  traceback: (o.traceback || []).join('\\n').replace(/\\x1b\\[[0-9;]*m/g, ''),
                  source: cell.model.sharedModel.getSource().slice(0, 400)}});
      }}
    }}
  }});
  return out;
}}"""


# Code cells with source whose execution count is still empty.
_JS_UNEXECUTED = f"""() => {{
  const w = {_JS_NOTEBOOK};
  const out = [];
  w.content.widgets.forEach((cell, i) => {{
    if (cell.model.type === 'code' && cell.model.sharedModel.getSource().trim()
        && cell.model.executionCount === null) out.push(i);
  }});
  return out;
}}"""


def open_notebook(page, lab: JupyterLab, name: str, timeout: float = 120.0) -> float:
    """Open ``name`` in JupyterLab and wait until its kernel is idle; returns seconds."""
    t0 = time.perf_counter()
    page.goto(lab.url(name))
    page.wait_for_function(_JS_KERNEL_IDLE, timeout=timeout * 1000, polling=200)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the notebook
    return time.perf_counter() - t0


def run_all(page, timeout: float = 600.0) -> tuple[float, list[dict]]:
    """Run All Cells and wait until the run ends (or stops at an error).

    Returns (seconds, errors); errors are the error outputs of the notebook's cells.
    """
    t0 = time.perf_counter()
    page.evaluate(
        f"""() => {{
      window.__jvRun = null;
      const w = {_JS_NOTEBOOK};
      w.content.activate();
      window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => {{ window.__jvRun = {{ok: ok}}; }},
        err => {{ window.__jvRun = {{error: String(err)}}; }});
    }}"""
    )
    page.wait_for_function(
        f"() => window.__jvRun !== null || ({_JS_KERNEL_STATUS})() === 'dead'",
        timeout=timeout * 1000,
        polling=250,
    )
    page.wait_for_function(_JS_KERNEL_IDLE_OR_DEAD, timeout=timeout * 1000, polling=200)
    seconds = time.perf_counter() - t0
    errors = page.evaluate(_JS_CELL_ERRORS)
    if not errors:
        skipped = page.evaluate(_JS_UNEXECUTED)
        if skipped:
            status = page.evaluate(_JS_KERNEL_STATUS)
            errors.append(
                {
                    "cell": skipped[0],
                    "ename": "NotExecuted",
                    "evalue": f"code cells {skipped} did not run (kernel died or restarted?); "
                    f"kernel status {status!r}",
                    "traceback": "",
                    "source": "",
                }
            )
    return seconds, errors


@contextlib.contextmanager
def notebook_page(
    notebook: Path, selectors: list[str], error_shot: str, timeout: float = 900.0
) -> Iterator:
    """A Chromium page with ``notebook`` open in a fresh JupyterLab, Run All done and every
    one of ``selectors`` on the page; the shared setup of the per-notebook browser tests.

    Fails the calling test when the browser cannot run here, the notebook is missing or a cell
    raises (with the cell errors and a screenshot named ``error_shot``).
    """
    import pytest

    reason = browser_unavailable_reason()
    if reason:
        pytest.fail(f"browser tests cannot run: {reason}")
    if not notebook.exists():
        pytest.fail(f"{notebook} is missing")
    with JupyterLab([notebook], env=fast_env()) as lab, chromium() as ctx:
        page = ctx.new_page()
        open_notebook(page, lab, notebook.name)
        seconds, errors = run_all(page, timeout=timeout)
        print(f"{notebook.name}: Run All took {seconds:.1f}s")
        if errors:
            screenshot(page, error_shot)
            pytest.fail(f"{notebook.name} raised:\n{format_cell_errors(errors)}", pytrace=False)
        wait_for_selectors(page, selectors)
        yield page
        page.close()


def format_cell_errors(errors: list[dict]) -> str:
    return "\n\n".join(
        f"cell {e['cell']}: {e['ename']}: {e['evalue']}\n--- source ---\n{e['source']}\n"
        f"--- traceback ---\n{e['traceback'][-3000:]}"
        for e in errors
    )


def wait_for_selectors(page, selectors: list[str], timeout: float = 120.0) -> None:
    for sel in selectors:
        page.wait_for_selector(sel, state="attached", timeout=timeout * 1000)


def page_text_problems(page) -> list[str]:
    """Widget-manager failure texts visible on the page."""
    problems = []
    for text in ("Error displaying widget", "Loading widget...", "model not found"):
        n = page.get_by_text(text, exact=False).count()
        if n:
            problems.append(f"{n} x {text!r}")
    return problems


def image_facts(page, selector: str) -> list[dict]:
    """``{src, naturalWidth, naturalHeight, complete}`` of every ``<img>`` matching selector."""
    return page.eval_on_selector_all(
        selector,
        """els => els.map(e => ({src: e.getAttribute('src') || '', complete: e.complete,
                                 naturalWidth: e.naturalWidth, naturalHeight: e.naturalHeight}))""",
    )


def wait_for_images_loaded(page, selector: str, timeout: float = 60.0) -> None:
    page.wait_for_function(
        """sel => { const els = document.querySelectorAll(sel);
                   return els.length > 0 &&
                          [...els].every(e => e.complete && e.naturalWidth > 0); }""",
        arg=selector,
        timeout=timeout * 1000,
        polling=200,
    )


def screenshot(page, name: str, selector: str | None = None) -> Path:
    """Save a PNG under test-artifacts/ (the whole page, or the first element matching)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path))
    else:
        # JupyterLab scrolls the notebook inside a fixed-height panel: grow the window so a
        # tall element fits, then restore it.
        loc = page.locator(selector).first
        box = loc.bounding_box() or {"height": 0}
        size = page.viewport_size or VIEWPORT
        need = int(box["height"]) + 250
        if need > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": min(need, 6000)})
        try:
            loc.scroll_into_view_if_needed()
            loc.screenshot(path=str(path))
        finally:
            page.set_viewport_size(size)
    return path


# ------------------------------------------------------------------------------------ latency

_JS_INSTALL_PROBE = """sel => {
  const imgs = [...document.querySelectorAll(sel)];
  if (!imgs.length) throw new Error('no element matches ' + sel);
  const st = window.__jvLat = {t0: null, first: null, last: null, pending: false, samples: []};
  document.addEventListener('keydown', () => {
    if (!st.pending) { st.t0 = performance.now(); st.first = st.last = null; st.pending = true; }
  }, true);
  const seen = img => () => {
    if (!st.pending) return;
    const t = performance.now() - st.t0;
    if (img === imgs[0] && st.first === null) st.first = t;
    st.last = t;
  };
  for (const img of imgs)
    new MutationObserver(seen(img)).observe(img, {attributes: true, attributeFilter: ['src']});
  st.finish = () => {
    st.samples.push({first: st.first, last: st.last});
    st.pending = false;
  };
}"""


def measure_key_latency(
    page,
    handle_selector: str,
    img_selector: str,
    presses: int = 30,
    key: str = "ArrowRight",
    timeout: float = 30.0,
    settle: float = 0.05,
) -> list[dict[str, float]]:
    """Milliseconds from keydown on the focused slider handle to the images' ``src`` changes.

    For each press returns ``{"first": ms, "last": ms}``: ``first`` when the first image
    matching ``img_selector`` changed, ``last`` when the last of them changed before the
    kernel went idle (the whole update). One press at a time: the next key goes only after
    the kernel is idle again (and a short settle), since ipywidgets coalesces rapid updates.
    """
    page.locator(img_selector).first.scroll_into_view_if_needed()
    page.evaluate(_JS_INSTALL_PROBE, img_selector)
    page.locator(handle_selector).first.focus()
    for _ in range(presses):
        page.keyboard.press(key)
        page.wait_for_function(
            "() => window.__jvLat.first !== null", timeout=timeout * 1000, polling="raf"
        )
        page.wait_for_function(_JS_KERNEL_IDLE, timeout=timeout * 1000, polling="raf")
        page.evaluate("() => window.__jvLat.finish()")
        time.sleep(settle)
    return page.evaluate("() => window.__jvLat.samples")


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(xs: list[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "median": statistics.median(xs) if xs else float("nan"),
        "p95": percentile(xs, 95),
        "min": min(xs) if xs else float("nan"),
        "max": max(xs) if xs else float("nan"),
    }


# ---------------------------------------------------------------------------- notebook makers


def write_notebook(path: Path, sources: list[str]) -> Path:
    """Write a python3 notebook with one code cell per source string."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, str(path))
    return path


# The messaging floor: a slider whose callback swaps precomputed PNGs into an Image (no
# compute); the same DOM classes as the Layer Explorer, so the same selectors measure both.
BASELINE_SOURCES = [
    """\
import io
import ipywidgets as W
import numpy as np
from PIL import Image as PILImage

def png(i):
    rng = np.random.default_rng(i)
    a = rng.integers(0, 255, (64, 64), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()

pngs = [png(i) for i in range(8)]
slider = W.IntSlider(0, min=0, max=1000, description="image")
slider.add_class("jv-image-slider")
img = W.Image(value=pngs[0], format="png")
grid = W.Box([img])
grid.add_class("jv-channel-grid")
slider.observe(lambda ch: setattr(img, "value", pngs[ch["new"] % len(pngs)]), "value")
box = W.VBox([slider, grid])
box.add_class("jv-baseline")
box""",
]
