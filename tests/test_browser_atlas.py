"""The ActivationAtlas widget as a person uses it in JupyterLab (Chromium).

A small atlas of the shapes model: press Build, watch the status reach "done" and the atlas
picture appear, hover the cells until one has samples, click it and see its data set images
and its class attribution appear beside the atlas. A screenshot goes to test-artifacts/.
"""

from __future__ import annotations

import re

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = "atlas_browser.ipynb"
SOURCES = [
    """\
import jaxvis as jv
data = jv.zoo.load_data("shapes_cnn")
probe = jv.zoo.load("shapes_cnn").probe
aa = jv.widgets.ActivationAtlas(
    probe, data.x_test[:150], labels=data.y_test[:150], layer="act5", grid=4, steps=16
)
aa""",
]
ROOT = ".jv-activation-atlas"
MAP_IMG = f"{ROOT} .jv-atlas-map img.jv-grid-img"
STATUS = f"{ROOT} .jv-atlas-status"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    reason = bh.browser_unavailable_reason()
    if reason:
        pytest.fail(f"browser tests cannot run: {reason}")
    nb = bh.write_notebook(tmp_path_factory.mktemp("nb") / NB, SOURCES)
    with bh.JupyterLab([nb], env=bh.fast_env()) as lab, bh.chromium() as ctx:
        page = ctx.new_page()
        bh.open_notebook(page, lab, NB)
        _, errors = bh.run_all(page, timeout=300)
        if errors:
            bh.screenshot(page, "atlas-error")
            pytest.fail(f"{NB} raised:\n{bh.format_cell_errors(errors)}", pytrace=False)
        bh.wait_for_selectors(page, [f"{ROOT} .jv-atlas-build", STATUS])
        yield page
        page.close()


def test_build_then_click_a_cell_shows_its_images(page):
    page.locator(f"{ROOT} .jv-atlas-build").click()
    page.wait_for_function(
        "sel => /done: \\d+ cells/.test(document.querySelector(sel).innerText)",
        arg=STATUS,
        timeout=240_000,
        polling=200,
    )
    bh.wait_for_images_loaded(page, MAP_IMG)
    img = page.locator(MAP_IMG)
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    assert box and box["width"] > 0
    # hover cell centres until one holds samples (its label says so), then click it
    target = None
    for r in range(4):
        for c in range(4):
            x, y = box["x"] + (c + 0.5) * box["width"] / 4, box["y"] + (r + 0.5) * box["height"] / 4
            page.mouse.move(x, y)
            label = img.get_attribute("title") or ""
            m = re.match(r"\((\d+), (\d+)\): (\d+) samples", label)
            if m:
                target = (x, y, int(m.group(3)), label)
                break
        if target:
            break
    assert target, "no occupied cell found by hovering"
    x, y, n, label = target
    page.mouse.click(x, y)
    title = page.locator(f"{ROOT} .jv-atlas-cell-title")
    page.wait_for_function(
        "sel => /cell \\(\\d+, \\d+\\)/.test(document.querySelector(sel).innerText)",
        arg=f"{ROOT} .jv-atlas-cell-title",
        timeout=30_000,
        polling=100,
    )
    assert f"{n} image(s)" in title.inner_text(), (label, title.inner_text())
    cells = f"{ROOT} img.jv-atlas-cell-images"
    bh.wait_for_images_loaded(page, cells)
    facts = bh.image_facts(page, cells)
    assert facts and facts[0]["naturalWidth"] > 0  # the cell's data set images are shown
    assert page.locator(f"{ROOT} .jv-atlas-class-row").count() >= 1
    assert "class attribution" in page.locator(f"{ROOT} .jv-atlas-attribution").inner_text()
    assert page.locator(f"{ROOT} .jv-error").count() == 0
    bh.screenshot(page, "atlas-cell-clicked", selector=ROOT)
