"""Widgets beyond JupyterLab, part 1: ``widget.save_html(path)`` opened in Chromium with no
kernel and no network (every request other than the file itself is refused).

The page must show the widget's pictures as they were when saved: the layer explorer's grids
come from the anywidget ES module (``channel_grid.js``) running against the saved state, so this
also checks that the front-end keeps to anywidget's model interface (``get``/``set``/``on``/
``save_changes``), with no Jupyter internals. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import io

import browser_harness as bh
import numpy as np
import pytest
from PIL import Image

import jaxvis as jv

pytestmark = pytest.mark.browser

_JS_FACTS = """() => ({
  ready: document.body.dataset.jvReady === '1',
  anywidgets: [...document.querySelectorAll('[data-jv-anywidget]')].map(e => e.dataset.jvRendered),
  imgs: [...document.querySelectorAll('img')].map(i => ({
      cls: i.className, w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 30)})),
  grids: [...document.querySelectorAll('.jv-layer-grid')].map(g => g.dataset.layer),
  svg_marks: document.querySelectorAll('svg.jv-static-figure rect, svg.jv-static-figure polyline')
      .length,
  text: document.body.innerText,
})"""


@pytest.fixture(scope="module")
def demo():
    return jv.zoo.load("mnist_cnn")


def _open(ctx, path):
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith("file://") or r.request.url.startswith("blob:"):
            return r.continue_()
        blocked.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function("() => document.body.dataset.jvReady === '1'", timeout=30_000)
    page.wait_for_timeout(300)
    return page, errors, blocked


def test_layer_explorer_exports_with_its_pictures(demo, tmp_path):
    reason = bh.browser_unavailable_reason()
    if reason:
        pytest.fail(f"browser tests cannot run: {reason}")
    explorer = jv.widgets.LayerExplorer(demo.probe, demo.x_test[:5], labels=demo.y_test[:5])
    explorer.slider.value = 3
    path = explorer.save_html(tmp_path / "explorer.html")
    assert path.stat().st_size > 10_000
    with bh.chromium() as ctx:
        page, errors, blocked = _open(ctx, path)
        facts = page.evaluate(_JS_FACTS)
        bh.screenshot(page, "static_layer_explorer")
        # The grid PNGs shown are the ones in the widget now (image 3), byte for byte.
        shown = page.evaluate(
            """async () => Promise.all([...document.querySelectorAll('.jv-layer-grid img')]
                 .map(async i => {
                   const b = new Uint8Array(await (await fetch(i.src)).arrayBuffer());
                   let s = ''; b.forEach(x => s += String.fromCharCode(x)); return btoa(s);
                 }))"""
        )
    assert not errors, errors
    assert not blocked, f"the page asked the network for {blocked}"
    assert facts["ready"] and facts["anywidgets"] and all(r == "1" for r in facts["anywidgets"])
    assert facts["grids"] == list(explorer.grids.names)
    grid_imgs = [i for i in facts["imgs"] if "jv-grid-img" in i["cls"]]
    assert grid_imgs and all(i["w"] > 0 for i in grid_imgs), facts["imgs"]
    assert [base64.b64decode(s) for s in shown] == [bytes(p) for p in explorer.grids.pngs]
    assert facts["svg_marks"] >= 10  # the class-probability bars
    assert "Saved by jaxvis" in facts["text"]


def test_filter_grid_and_histograms_export(demo, tmp_path):
    filters = jv.widgets.FilterGrid(demo.probe)
    hists = jv.widgets.WeightHistograms(demo.probe)
    box = jv.widgets.save_html(
        __import__("ipywidgets").VBox([filters, hists]), tmp_path / "anatomy.html"
    )
    with bh.chromium() as ctx:
        page, errors, blocked = _open(ctx, box)
        facts = page.evaluate(_JS_FACTS)
        bh.screenshot(page, "static_filters_histograms")
    assert not errors and not blocked, (errors, blocked)
    imgs = [i for i in facts["imgs"] if i["w"] > 0]
    assert imgs, facts["imgs"]
    assert facts["svg_marks"] > 0


def test_bars_over_class_names_are_drawn(tmp_path):
    """An ordinal x axis (the shapes model's class names) becomes bar positions."""
    shapes = jv.zoo.load("shapes_cnn")
    page = jv.widgets.LayerExplorer(shapes.probe, shapes.x_test[:2]).save_html(tmp_path / "s.html")
    text = page.read_text()
    figure = text[text.index("<svg class='jv-static-figure") :]
    figure = figure[: figure.index("</svg>")]
    assert figure.count("<rect") == 1 + len(shapes.class_names)  # the frame + one bar per class


def test_save_html_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="widget must be an ipywidgets widget"):
        jv.widgets.save_html(np.zeros(3), tmp_path / "x.html")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        jv.widgets.save_html(jv.widgets.ChannelGrid(), 3)


def test_channel_grid_png_survives_the_round_trip(tmp_path):
    """A ChannelGrid's PNG in the page decodes to the tiles it was given."""
    grid = jv.widgets.ChannelGrid()
    tiles = np.linspace(0, 1, 4 * 5 * 5).reshape(4, 5, 5)
    grid.show_tiles(tiles, normalize="none", scale=1, spacing=1, zoom=1)
    path = grid.save_html(tmp_path / "grid.html")
    with bh.chromium() as ctx:
        page, errors, _ = _open(ctx, path)
        src = page.evaluate(
            """async () => { const i = document.querySelector('.jv-grid-img');
              const b = new Uint8Array(await (await fetch(i.src)).arrayBuffer());
              let s = ''; b.forEach(x => s += String.fromCharCode(x)); return btoa(s); }"""
        )
    assert not errors
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("L"), np.float64)
    assert np.abs(img[:5, :5] / 255 - tiles[0]).max() <= 1 / 255 + 1e-9
