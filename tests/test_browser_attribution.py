"""The Attribution widget in notebooks/04_attribution.ipynb, as a person sees it: JupyterLab in
headless Chromium, Run All, change the class, move alpha, watch the overlay update."""

from __future__ import annotations

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = bh.NOTEBOOKS / "04_attribution.ipynb"
ROOT = ".jv-attribution"
OVERLAY = f"{ROOT} img.jv-attr-image"


@pytest.fixture(scope="module")
def page():
    with bh.notebook_page(NB, [ROOT], "attribution-error") as pg:
        pg.locator(ROOT).first.scroll_into_view_if_needed()
        bh.wait_for_images_loaded(pg, OVERLAY)
        yield pg


def _src(page) -> str:
    return page.locator(OVERLAY).first.get_attribute("src") or ""


def _wait_src_change(page, before: str) -> None:
    page.wait_for_function(
        "([sel, s]) => document.querySelector(sel).getAttribute('src') !== s",
        arg=[OVERLAY, before],
        timeout=60_000,
        polling=100,
    )
    bh.wait_for_images_loaded(page, OVERLAY)


def _assert_clean(page) -> None:
    assert not page.locator(f"{ROOT} .jv-error").count(), page.locator(
        f"{ROOT} .jv-error"
    ).all_inner_texts()
    assert not bh.page_text_problems(page)


def test_widget_renders_overlay_and_gap(page) -> None:
    facts = bh.image_facts(page, OVERLAY)
    assert facts and facts[0]["naturalWidth"] >= 200, facts
    assert "completeness gap" in page.locator(f"{ROOT} .jv-attr-delta").first.inner_text()
    _assert_clean(page)
    bh.screenshot(page, "attribution-widget", selector=ROOT)


def test_changing_the_class_updates_the_overlay(page) -> None:
    select = page.locator(f"{ROOT} .jv-attr-class select").first
    before = _src(page)
    first = select.input_value()
    select.select_option(index=1)
    _wait_src_change(page, before)
    assert select.input_value() != first
    _assert_clean(page)
    bh.screenshot(page, "attribution-class-changed", selector=ROOT)


def test_moving_alpha_updates_the_interior_gradient(page) -> None:
    method = page.locator(f"{ROOT} .jv-attr-method select").first
    before = _src(page)
    method.select_option(label="interior gradients (alpha)")
    _wait_src_change(page, before)
    readout = page.locator(f"{ROOT} .jv-attr-alpha .widget-readout").first
    value0 = readout.inner_text()
    before = _src(page)
    page.locator(f"{ROOT} .jv-attr-alpha .noUi-handle").first.focus()
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    _wait_src_change(page, before)
    assert readout.inner_text() != value0
    _assert_clean(page)
    bh.screenshot(page, "attribution-alpha-moved", selector=ROOT)


def test_trust_tab_runs_the_report_and_draws_bars(page) -> None:
    root = page.locator(ROOT).first
    root.locator(".lm-TabBar-tab, .p-TabBar-tab", has_text="which can I trust?").first.click()
    root.locator(".jv-trust-methods select").first.select_option(label=["gradient (saliency)"])
    root.locator(".jv-trust-metrics select").first.select_option(
        label=["deletion AUC", "insertion AUC", "sparseness (Gini)"]
    )
    root.locator(".jv-trust-run button, button.jv-trust-run").first.click()
    page.wait_for_function(
        "(sel) => (document.querySelector(sel)?.innerText || '').includes('done')",
        arg=f"{ROOT} .jv-trust-status",
        timeout=240_000,
        polling=250,
    )
    bars = root.locator(".jv-trust-bars rect.bar")
    bars.first.wait_for(timeout=30_000)
    assert bars.count() == 1
    assert root.locator(".jv-trust-curves path.line").count() >= 1
    assert "saliency" in root.locator(".jv-trust-curves").first.inner_html()  # the legend
    assert "jv-best" in root.locator(".jv-trust-table").first.inner_html()
    _assert_clean(page)
    bh.screenshot(page, "attribution-trust-tab", selector=ROOT)
