"""UnitExplorer in notebooks/06_bring_your_own_model.ipynb, as a person sees it in JupyterLab.

Run All, then: every panel of the UnitExplorer shows a decoded image, no error; press
ArrowRight on the channel slider and the feature visualisation, the top-9 images, the patches
and the captions change to the next channel's. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = bh.NOTEBOOKS / "06_bring_your_own_model.ipynb"
UE = ".jv-unit-explorer"
PANELS = ["jv-ue-fv", "jv-ue-top", "jv-ue-patches", "jv-ue-input", "jv-ue-activation"]
CHANGING = ["jv-ue-fv", "jv-ue-top", "jv-ue-patches", "jv-ue-activation"]


@pytest.fixture(scope="module")
def page():
    with bh.notebook_page(
        NB, [UE] + [f"{UE} img.{p}" for p in PANELS], "unit-explorer-error"
    ) as pg:
        yield pg


def _srcs(page) -> dict[str, str]:
    return {p: page.locator(f"{UE} img.{p}").get_attribute("src") for p in PANELS}


def test_unit_explorer_renders_and_follows_the_channel_slider(page):
    assert not bh.page_text_problems(page)
    page.locator(UE).scroll_into_view_if_needed()
    for p in PANELS:
        bh.wait_for_images_loaded(page, f"{UE} img.{p}")
        facts = bh.image_facts(page, f"{UE} img.{p}")
        assert facts[0]["naturalWidth"] > 0, p
    readout = page.locator(f"{UE} .jv-ue-channel .widget-readout")
    assert readout.inner_text().strip() == "5"  # the notebook starts on conv3 channel 5
    caption = page.locator(f"{UE} .jv-ue-top-caption").inner_text()
    assert "top-9 of 5,000 images" in caption, caption
    assert (
        "receptive field 9×9, stride 4" in page.locator(f"{UE} .jv-ue-patches-caption").inner_text()
    )
    assert page.locator(f"{UE} .jv-error").count() == 0
    bh.screenshot(page, "unit-explorer-channel5", selector=UE)

    before = _srcs(page)
    page.locator(f"{UE} .jv-ue-channel .noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        """([ue, before]) => Object.entries(before).every(([cls, src]) =>
               cls === 'jv-ue-input' ||
               document.querySelector(`${ue} img.${cls}`).getAttribute('src') !== src)""",
        arg=[UE, before],
        timeout=120_000,
        polling=200,
    )
    for p in PANELS:
        bh.wait_for_images_loaded(page, f"{UE} img.{p}")
    after = _srcs(page)
    assert readout.inner_text().strip() == "6"
    assert all(after[p] != before[p] for p in CHANGING)
    assert after["jv-ue-input"] == before["jv-ue-input"]  # same input, another unit
    assert page.locator(f"{UE} .jv-ue-top-caption").inner_text() != caption
    assert "channel 6" in page.locator(f"{UE} .jv-ue-activation-caption").inner_text()
    assert page.locator(f"{UE} .jv-error").count() == 0
    assert not bh.page_text_problems(page)
    bh.screenshot(page, "unit-explorer-channel6", selector=UE)
