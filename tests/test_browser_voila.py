"""Widgets beyond JupyterLab, part 2: ``notebooks/dashboard.ipynb`` served by Voilà, opened in
Chromium; the widgets render (no errors, the grids' images load) and a key press on the image
slider changes the picture. Screenshots before and after go to test-artifacts/.

Voilà runs the notebook with a live kernel and renders the widgets with its own front-end (not
JupyterLab's), so the anywidget grid working here is anywidget's conventions at work.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

DASHBOARD = bh.NOTEBOOKS / "dashboard.ipynb"
GRID_IMG = ".jv-layer-explorer .jv-layer-grid img"
HANDLE = ".jv-layer-explorer .jv-image-slider .noUi-handle"
READOUT = ".jv-layer-explorer .jv-image-slider .widget-readout"


class Voila:
    """``voila <notebook>`` on a free loopback port with a random token, in its own session,
    with every Jupyter/IPython folder in a temp dir; stopped by its process group id."""

    def __init__(self, notebook: Path):
        self.tmp = Path(tempfile.mkdtemp(prefix="jv-voila-"))
        shutil.copy(notebook, self.tmp / notebook.name)
        self.name = notebook.name
        self.port = bh.free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Voila:
        env = dict(os.environ, **bh.fast_env(), JUPYTER_PREFER_ENV_PATH="1")
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
            (self.tmp / var).mkdir()
            env[var] = str(self.tmp / var)
        cmd = [
            sys.executable,
            "-m",
            "voila",
            self.name,
            "--no-browser",
            f"--port={self.port}",
            "--Voila.ip=127.0.0.1",
            f"--token={self.token}",
            "--show_tracebacks=True",
        ]
        self.log = open(self.tmp / "voila.log", "wb")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"voila exited:\n{self.read_log()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # the server answers (403 without the token): it is up
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"voila did not start:\n{self.read_log()}")
        return self

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def read_log(self) -> str:
        return (self.tmp / "voila.log").read_text(errors="replace")[-4000:]

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # voila and the kernel it started
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _grid_srcs(page) -> list[str]:
    return page.eval_on_selector_all(GRID_IMG, "els => els.map(e => e.src)")


def test_dashboard_renders_in_voila_and_the_slider_changes_the_picture():
    reason = bh.browser_unavailable_reason()
    if reason:
        pytest.fail(f"browser tests cannot run: {reason}")
    assert DASHBOARD.exists()
    with Voila(DASHBOARD) as server, bh.chromium() as ctx:
        page = ctx.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(server.url(), timeout=300_000)
        try:
            page.wait_for_selector(GRID_IMG, timeout=300_000)
            bh.wait_for_images_loaded(page, GRID_IMG, timeout=60)
        except Exception:
            bh.screenshot(page, "voila_dashboard_error")
            raise AssertionError(f"the dashboard did not render:\n{server.read_log()}") from None
        assert not bh.page_text_problems(page), bh.page_text_problems(page)
        before = _grid_srcs(page)
        assert before and page.inner_text(READOUT).strip() == "0"
        assert all(f["naturalWidth"] > 0 for f in bh.image_facts(page, GRID_IMG))
        bh.screenshot(page, "voila_dashboard_before")

        page.focus(HANDLE)
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([sel, old]) => { const s = [...document.querySelectorAll(sel)].map(e => e.src);"
            " return s.length && s[0] !== old[0]; }",
            arg=[GRID_IMG, before],
            timeout=60_000,
        )
        bh.wait_for_images_loaded(page, GRID_IMG, timeout=60)
        assert page.inner_text(READOUT).strip() == "1"
        after = _grid_srcs(page)
        bh.screenshot(page, "voila_dashboard_after")
    assert after != before
    assert not page_errors, page_errors
