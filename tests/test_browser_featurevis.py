"""FeatureVis in notebooks/03_feature_visualization.ipynb, as a person sees it in JupyterLab.

Run All, then in the widget: set 1024 steps and whole-layer mode, press Run, see the preview
change while it runs, press Stop, see the run end with the last image kept. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import time

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = bh.NOTEBOOKS / "03_feature_visualization.ipynb"
FV = ".jv-feature-vis"
PREVIEW = f"{FV} img.jv-fv-preview"

# Count changes of the preview's src on the page's own clock.
_JS_WATCH = """sel => {
  const img = document.querySelector(sel);
  window.__jvFv = {changes: 0, times: []};
  new MutationObserver(() => { window.__jvFv.changes += 1;
                               window.__jvFv.times.push(performance.now()); })
    .observe(img, {attributes: true, attributeFilter: ['src']});
}"""


@pytest.fixture(scope="module")
def page():
    selectors = [FV, PREVIEW, f"{FV} .jv-fv-run", f"{FV} .jv-fv-stop"]
    with bh.notebook_page(NB, selectors, "featurevis-error") as pg:
        yield pg


def test_featurevis_preview_changes_while_running_and_stop_ends_it(page):
    assert not bh.page_text_problems(page)
    page.locator(f"{FV} .jv-fv-steps").scroll_into_view_if_needed()
    readout = page.locator(f"{FV} .jv-fv-steps .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("1024")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.trim() === '1024'",
        arg=f"{FV} .jv-fv-steps .widget-readout",
        timeout=10_000,
    )
    page.locator(f"{FV} .jv-fv-grid-mode input").check()  # whole layer: a longer run
    page.evaluate(_JS_WATCH, PREVIEW)
    page.locator(f"{FV} .jv-fv-run").click()
    # the preview changes at least 3 times while the run goes on
    page.wait_for_function("() => window.__jvFv.changes >= 3", timeout=180_000, polling=100)
    status = page.locator(f"{FV} .jv-fv-status").inner_text()
    assert "running" in status, status
    page.locator(f"{FV} .jv-fv-stop").click()
    page.wait_for_function(
        "sel => /stopped after \\d+ steps/.test(document.querySelector(sel).innerText)",
        arg=f"{FV} .jv-fv-status",
        timeout=60_000,
        polling=100,
    )
    steps = int(
        page.locator(f"{FV} .jv-fv-status").inner_text().split("stopped after ")[1].split()[0]
    )
    assert 0 < steps < 1024
    changes = page.evaluate("() => window.__jvFv.changes")
    time.sleep(2.0)  # nothing runs any more: the preview stays as it is
    assert page.evaluate("() => window.__jvFv.changes") == changes
    facts = bh.image_facts(page, PREVIEW)
    assert facts and facts[0]["naturalWidth"] > 0  # the last image is kept
    assert page.locator(f"{FV} .jv-fv-run").is_enabled()
    assert page.locator(f"{FV} .jv-error").count() == 0
    bh.screenshot(page, "featurevis-stopped", selector=FV)
