"""The Layer Explorer on a 224x224 model with a 2,048-channel layer, in JupyterLab/Chromium.

The fixture model is a cheap stand-in for a ResNet-50 (random weights): a strided stem at
224x224 down to a 7x7x2,048 last stage. The test pages through the 2,048-channel layer, moves
the image slider, closes and reopens a layer row, and saves screenshots to test-artifacts/.
"""

from __future__ import annotations

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = "big_explorer.ipynb"
SOURCES = [
    """\
import flax.linen as nn
import jax
import numpy as np
import jaxvis as jv


class Wide224(nn.Module):
    \"\"\"224x224 -> 112 -> 56 -> 28 -> 14 -> 7x7x2048, like a ResNet-50's stages.\"\"\"

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (7, 7), strides=2, name="stem")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2, name="stage2")(x))
        x = nn.relu(nn.Conv(256, (3, 3), strides=2, name="stage3")(x))
        x = nn.relu(nn.Conv(2048, (1, 1), strides=2, name="stage4")(x))
        return nn.Dense(10, name="head")(x.mean(axis=(1, 2)))


module = Wide224()
variables = module.init(jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32))
probe = jv.Probe(module, variables, input_shape=(224, 224, 3))
rng = np.random.default_rng(0)
images = rng.uniform(0, 1, (6, 224, 224, 3)).astype(np.float32)
explorer = jv.widgets.LayerExplorer(probe, images)
explorer.select("stage4", 0)
explorer""",
]
ROOT = ".jv-layer-explorer"
MAIN_IMG = f"{ROOT} .jv-main-grid img"
PAGE_INFO = f"{ROOT} .jv-page-info"


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
            bh.screenshot(page, "big-explorer-error")
            pytest.fail(f"{NB} raised:\n{bh.format_cell_errors(errors)}", pytrace=False)
        bh.wait_for_selectors(page, [MAIN_IMG, PAGE_INFO])
        bh.wait_for_images_loaded(page, MAIN_IMG)
        yield page
        page.close()


def _src(page) -> str:
    return page.locator(MAIN_IMG).first.get_attribute("src") or ""


def _wait_src_change(page, src0: str) -> None:
    page.wait_for_function(
        "([sel, src0]) => document.querySelector(sel).getAttribute('src') !== src0",
        arg=[MAIN_IMG, src0],
        timeout=60_000,
        polling=100,
    )
    bh.wait_for_images_loaded(page, MAIN_IMG)


def test_big_explorer_renders_one_capped_page(page):
    page.locator(MAIN_IMG).first.scroll_into_view_if_needed()
    bh.screenshot(page, "big-explorer-page0", selector=ROOT)
    assert "1–64 of 2048" in page.locator(PAGE_INFO).inner_text()
    facts = bh.image_facts(page, MAIN_IMG)[0]  # 8 x 8 tiles of 7x7 (x2 in the PNG) + gaps
    assert (facts["naturalWidth"], facts["naturalHeight"]) == (8 * 14 + 7, 8 * 14 + 7)
    assert not bh.page_text_problems(page)
    assert not page.locator(f"{ROOT} .jv-error").count()


def test_big_explorer_pages_through_the_wide_layer(page):
    src0 = _src(page)
    page.locator(f"{ROOT} .jv-page-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    _wait_src_change(page, src0)
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.includes('65–128 of 2048')",
        arg=PAGE_INFO,
        timeout=30_000,
    )
    bh.screenshot(page, "big-explorer-page1", selector=ROOT)
    src1 = _src(page)
    page.locator(f"{ROOT} .jv-sort button", has_text="max").click()  # sort by max activation
    _wait_src_change(page, src1)
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.includes('1–64 of 2048 by max activation')",
        arg=PAGE_INFO,
        timeout=30_000,
    )
    bh.screenshot(page, "big-explorer-sorted", selector=ROOT)


def test_big_explorer_image_slider_changes_the_picture(page):
    src0 = _src(page)
    readout = f"{ROOT} .jv-image-slider .widget-readout"
    value0 = page.locator(readout).first.inner_text()
    page.locator(f"{ROOT} .jv-image-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    _wait_src_change(page, src0)
    assert page.locator(readout).first.inner_text() != value0
    lat = bh.measure_key_latency(page, f"{ROOT} .jv-image-slider .noUi-handle", MAIN_IMG, 3)
    print("key -> page picture (ms):", [round(x["first"]) for x in lat])
    bh.screenshot(page, "big-explorer-image-moved", selector=ROOT)
    assert not page.locator(f"{ROOT} .jv-error").count()


def test_big_explorer_row_closes_and_reopens(page):
    row = f'{ROOT} .jv-layer-grid[data-layer="stage3"]'
    page.locator(f"{row} .jv-layer-title").click()  # close
    page.wait_for_selector(f"{row}.jv-closed", timeout=30_000)
    page.locator(f"{row} .jv-layer-title").click()  # open again: rendered by the kernel
    page.wait_for_function(
        """sel => { const el = document.querySelector(sel);
                   const img = el && el.querySelector('img');
                   return !el.classList.contains('jv-closed') && img && img.getAttribute('src')
                          && img.complete && img.naturalWidth > 0; }""",
        arg=row,
        timeout=30_000,
    )
    bh.screenshot(page, "big-explorer-rows", selector=ROOT)
