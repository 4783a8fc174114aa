"""TrainingReplay in notebooks/05_watch_it_learn.ipynb, as a person sees it in JupyterLab.

Run All, then in the first replay: the frames are real images, pressing Play moves through
the steps (the frame image's src and the step readout change several times), pressing it again
pauses it, and no error is shown. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import time

import browser_harness as bh
import pytest

pytestmark = pytest.mark.browser

NB = bh.NOTEBOOKS / "05_watch_it_learn.ipynb"
TR = ".jv-training-replay"
FRAME = f"{TR} img.jv-tr-frame-act1"

# Count changes of the first replay's act1 frame src, on the page's own clock.
_JS_WATCH = """sel => {
  const img = document.querySelector(sel);
  window.__jvTr = {changes: 0, srcs: new Set([img.getAttribute('src')])};
  new MutationObserver(() => { window.__jvTr.changes += 1;
                               window.__jvTr.srcs.add(img.getAttribute('src')); })
    .observe(img, {attributes: true, attributeFilter: ['src']});
}"""


@pytest.fixture(scope="module")
def page():
    selectors = [TR, FRAME, f"{TR} .jv-tr-play", f"{TR} .jv-tr-readout"]
    with bh.notebook_page(NB, selectors, "training-replay-error") as pg:
        bh.wait_for_images_loaded(pg, f"{TR} img.jv-tr-frame")
        yield pg


def _readout(page) -> str:
    return page.locator(f"{TR} .jv-tr-readout").first.inner_text()


def test_play_changes_the_frames_and_pause_stops(page):
    assert not bh.page_text_problems(page)
    replay = page.locator(TR).first
    replay.scroll_into_view_if_needed()
    frames = bh.image_facts(page, f"{TR} img.jv-tr-frame")
    assert len(frames) >= 6 and all(f["naturalWidth"] > 0 for f in frames)
    assert "step 0" in _readout(page)
    assert page.locator(f"{TR} .jv-tr-loss svg").count() >= 1  # the bqplot curves rendered
    page.evaluate(_JS_WATCH, FRAME)

    play = page.locator(f"{TR} .jv-tr-play button").first  # play/pause, stop, repeat
    play.click()
    page.wait_for_function(
        "() => window.__jvTr.changes >= 4 && window.__jvTr.srcs.size >= 4",
        timeout=60_000,
        polling=100,
    )
    step_text = _readout(page)
    assert "step 0 " not in step_text, step_text
    bh.screenshot(page, "training-replay-playing", selector=TR)

    play.click()  # the same button pauses
    time.sleep(1.0)
    changes = page.evaluate("() => window.__jvTr.changes")
    paused_at = _readout(page)
    time.sleep(1.5)
    assert page.evaluate("() => window.__jvTr.changes") == changes  # paused: no new frames
    assert _readout(page) == paused_at and "step 0 " not in paused_at
    facts = bh.image_facts(page, FRAME)
    assert facts[0]["naturalWidth"] > 0 and facts[0]["complete"]
    assert page.locator(f"{TR} .jv-error").count() == 0
