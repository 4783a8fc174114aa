"""The tour, as a person sees it: JupyterLab in headless Chromium, Run All, look, drag.

One JupyterLab server and one browser serve the module. The first test checks the harness
itself on a trivial slider + image notebook (no jaxvis), so a failure of the tour tests below
is about jaxvis, not the plumbing. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

# CSS classes the widgets add (w.add_class(...)) -> what each must show.
TOUR_WIDGETS = {
    "jv-layer-explorer": "image",
    "jv-channel-grid": "image",
    "jv-model-summary": "text",
    "jv-filter-grid": "image",
    "jv-weight-histograms": "bqplot",
}
EXPLORER = ".jv-layer-explorer"
IMAGE_HANDLE = f"{EXPLORER} .jv-image-slider .noUi-handle"
IMAGE_READOUT = f"{EXPLORER} .jv-image-slider .widget-readout"
GRID_IMG = f"{EXPLORER} .jv-channel-grid img"
BASELINE_NB = "baseline.ipynb"

# Facts about one widget element: its images with a src, bqplot figures and their marks,
# visible text length, and in-place error boxes (jaxvis ErrorBox) or tracebacks.
_JS_WIDGET_FACTS = """el => {
  const imgs = [...el.querySelectorAll('img'), ...(el.matches('img') ? [el] : [])]
      .filter(i => i.getAttribute('src'))
      .map(i => ({naturalWidth: i.naturalWidth, complete: i.complete}));
  const figs = el.matches('.bqplot.figure') ? [el] : [...el.querySelectorAll('.bqplot.figure')];
  const bq = figs.map(f => {
    const groups = [...f.querySelectorAll('svg.svg-figure g[clip-path]')];
    const shapes = groups.reduce((n, g) =>
        n + g.querySelectorAll('rect,path,circle,image,line,polygon').length, 0);
    return {marks: groups.length, shapes: shapes};
  });
  const errors = [...el.querySelectorAll('.jv-error')].map(e => e.innerText.slice(0, 500));
  return {imgs, bq, errors, text: (el.innerText || '').trim().length};
}"""

_JS_TRACEBACKS = """() => [...document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(e => e.innerText).filter(t => /Traceback|Error:/.test(t)).map(t => t.slice(-1500))"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = bh.browser_unavailable_reason()
    if reason:  # only reached as root: CI must run these (`make test` installs chromium)
        pytest.fail(f"browser tests cannot run: {reason}")
    base = bh.write_notebook(tmp_path_factory.mktemp("nb") / BASELINE_NB, bh.BASELINE_SOURCES)
    notebooks = [base] + ([bh.TOUR] if bh.TOUR.exists() else [])
    with bh.JupyterLab(notebooks, env=bh.fast_env()) as server:
        print(f"jupyter lab started in {server.startup_seconds:.1f}s")
        yield server


@pytest.fixture(scope="module")
def browser(lab):
    with bh.chromium() as ctx:
        yield ctx


def _open_and_run(browser, lab, name, timeout):
    page = browser.new_page()
    t_open = bh.open_notebook(page, lab, name)
    t_run, errors = bh.run_all(page, timeout=timeout)
    print(f"{name}: kernel idle after {t_open:.1f}s, Run All took {t_run:.1f}s")
    if errors:
        bh.screenshot(page, f"{name}-error")
        pytest.fail(f"{name} raised:\n{bh.format_cell_errors(errors)}", pytrace=False)
    return page


def _wait_widgets_settled(page, timeout=60.0):
    """Until no widget is still 'Loading widget...' (or failed to display)."""
    page.wait_for_function(
        """() => !document.body.innerText.includes('Loading widget')""",
        timeout=timeout * 1000,
        polling=250,
    )


def test_harness_slider_updates_image(browser, lab):
    page = _open_and_run(browser, lab, BASELINE_NB, timeout=120)
    bh.wait_for_images_loaded(page, ".jv-baseline .jv-channel-grid img")
    handle = ".jv-baseline .jv-image-slider .noUi-handle"
    img = ".jv-baseline .jv-channel-grid img"
    lat = bh.measure_key_latency(page, handle, img, presses=3)
    assert len(lat) == 3
    assert page.locator(".jv-baseline .jv-image-slider .widget-readout").inner_text() == "3"
    assert not bh.page_text_problems(page)
    bh.screenshot(page, "baseline")
    page.close()


@pytest.fixture(scope="module")
def tour(browser, lab):
    if not bh.TOUR.exists():
        pytest.fail(f"{bh.TOUR.relative_to(bh.REPO)} is missing")
    page = _open_and_run(browser, lab, bh.TOUR.name, timeout=900)
    bh.wait_for_selectors(page, [f".{cls}" for cls in TOUR_WIDGETS], timeout=120)
    _wait_widgets_settled(page)
    yield page
    page.close()


def test_tour_widgets_render(tour):
    page = tour
    bh.screenshot(page, "tour-page")
    problems = bh.page_text_problems(page)
    assert not problems, f"widget manager problems: {problems}"
    assert not page.evaluate(_JS_TRACEBACKS), "tracebacks in outputs"
    for cls, kind in TOUR_WIDGETS.items():
        sel = f".{cls}"
        if kind == "image":  # every <img> with a src has decoded (naturalWidth > 0)
            page.wait_for_function(
                """sel => [...document.querySelectorAll(sel)].every(el =>
                      [...el.querySelectorAll('img'), ...(el.matches('img') ? [el] : [])]
                        .filter(i => i.getAttribute('src'))
                        .every(i => i.complete && i.naturalWidth > 0))""",
                arg=sel,
                timeout=60_000,
                polling=250,
            )
        facts = page.eval_on_selector_all(sel, f"els => els.map({_JS_WIDGET_FACTS})")
        bh.screenshot(page, f"tour-{cls}", selector=sel)
        assert facts, f"no element with class {cls}"
        for i, f in enumerate(facts):
            where = f"{sel}[{i}]"
            assert not f["errors"], f"{where} shows an error: {f['errors']}"
            if kind == "image":
                assert f["imgs"], f"{where} has no <img> with a src"
                assert all(im["naturalWidth"] > 0 for im in f["imgs"]), f"{where}: {f['imgs']}"
            elif kind == "bqplot":
                assert f["bq"], f"{where} has no bqplot figure"
                assert all(b["marks"] > 0 and b["shapes"] > 0 for b in f["bq"]), (
                    f"{where}: bqplot figures without drawn marks: {f['bq']}"
                )
            else:
                assert f["text"] > 0, f"{where} is empty"


def test_tour_image_slider_changes_activation_grid(tour):
    page = tour
    page.locator(GRID_IMG).first.scroll_into_view_if_needed()
    bh.screenshot(page, "tour-layer-explorer-before", selector=EXPLORER)
    src0 = page.locator(GRID_IMG).first.get_attribute("src")
    value0 = page.locator(IMAGE_READOUT).first.inner_text()
    page.locator(IMAGE_HANDLE).first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([sel, src0]) => document.querySelector(sel).getAttribute('src') !== src0",
        arg=[GRID_IMG, src0],
        timeout=60_000,
        polling=100,
    )
    bh.wait_for_images_loaded(page, GRID_IMG)
    value1 = page.locator(IMAGE_READOUT).first.inner_text()
    assert value1 != value0, f"the image slider did not move ({value0!r})"
    bh.screenshot(page, "tour-layer-explorer-after", selector=EXPLORER)
    assert not page.locator(f"{EXPLORER} .jv-error").count()
