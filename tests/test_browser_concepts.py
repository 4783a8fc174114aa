"""ConceptExplorer in notebooks/08_concepts.ipynb, as a person sees it in JupyterLab.

Run All (the notebook fits 6 concepts), then: a row per concept with decoded images and no
error; click concept 2 and the heatmap panel changes to concept 2's; press Fit and the rows
are drawn again from the new fit. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = bh.NOTEBOOKS / "08_concepts.ipynb"
CE = ".jv-concept-explorer"


@pytest.fixture(scope="module")
def page():
    with bh.notebook_page(
        NB, [CE, f"{CE} img.jv-ce-detail", f"{CE} img.jv-ce-heat"], "concept-explorer-error"
    ) as pg:
        yield pg


def _detail(page) -> str:
    return page.locator(f"{CE} img.jv-ce-detail").get_attribute("src")


def test_concept_explorer_fits_and_follows_a_click(page):
    assert not bh.page_text_problems(page)
    page.locator(CE).scroll_into_view_if_needed()
    for cls in ("jv-ce-fv", "jv-ce-patches", "jv-ce-heat", "jv-ce-detail"):
        bh.wait_for_images_loaded(page, f"{CE} img.{cls}")
        assert all(f["naturalWidth"] > 0 for f in bh.image_facts(page, f"{CE} img.{cls}")), cls
    assert page.locator(f"{CE} .jv-ce-select").count() == 6
    assert "concept 0" in page.locator(f"{CE} .jv-ce-detail-caption").inner_text()
    assert page.locator(f"{CE} .jv-error").count() == 0
    bh.screenshot(page, "concept-explorer-fitted", selector=CE)

    before = _detail(page)
    page.locator(f"{CE} .jv-ce-select-2").click()
    page.wait_for_function(
        "([sel, before]) => document.querySelector(sel).getAttribute('src') !== before",
        arg=[f"{CE} img.jv-ce-detail", before],
        timeout=60_000,
        polling=100,
    )
    bh.wait_for_images_loaded(page, f"{CE} img.jv-ce-detail")
    assert "concept 2" in page.locator(f"{CE} .jv-ce-detail-caption").inner_text()
    bh.screenshot(page, "concept-explorer-concept2", selector=CE)

    heat = page.locator(f"{CE} img.jv-ce-heat").first.get_attribute("src")
    page.locator(f"{CE} .jv-ce-method select").select_option("pca")
    page.locator(f"{CE} .jv-ce-fit").click()
    page.wait_for_function(
        """([sel, before]) => { const e = document.querySelector(sel);
                                return e && e.getAttribute('src') !== before; }""",
        arg=[f"{CE} img.jv-ce-heat", heat],
        timeout=300_000,
        polling=200,
    )
    bh.wait_for_images_loaded(page, f"{CE} img.jv-ce-heat")
    assert "pca" in page.locator(f"{CE} .jv-ce-status").inner_text()
    assert page.locator(f"{CE} .jv-error").count() == 0
    assert not bh.page_text_problems(page)
    bh.screenshot(page, "concept-explorer-refit", selector=CE)
