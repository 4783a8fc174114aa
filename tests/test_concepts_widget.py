"""ConceptExplorer headless: fit in a thread, rows of views, sorting by importance, clicking
a concept, save/load, Stop, and errors shown in place."""

from __future__ import annotations

import time

import numpy as np
import pytest

import jaxvis as jv
from jaxvis.widgets import ConceptExplorer


@pytest.fixture(scope="module")
def zoo():
    return jv.zoo.load("shapes_cnn")


@pytest.fixture(scope="module")
def ce(zoo):
    w = ConceptExplorer(
        zoo.probe,
        zoo.x_test[:120],
        "act5",
        n_concepts=4,
        fit_images=60,
        max_samples=3000,
        fv_steps=8,
        importance_images=16,
    )
    w.fit(wait=True)
    return w


def test_fit_shows_a_row_per_concept(ce):
    assert ce.error.error == ""
    assert ce.concepts.n_concepts == 4 and ce.concepts.method == "seminmf"
    assert len(ce.rows.children) == 4
    for row in ce.rows.children:
        classes = [c._dom_classes for c in row.children]
        assert any("jv-ce-fv" in c for c in classes) and any("jv-ce-heat" in c for c in classes)
        for child in row.children:
            if hasattr(child, "format") and child.format == "png":
                assert child.value[:4] == b"\x89PNG"
    assert ce.detail.value[:4] == b"\x89PNG" and ce.progress.value == 100


def _pngs(ce, cls):
    return [c.value for r in ce.rows.children for c in r.children if cls in c._dom_classes]


def test_another_input_redraws_only_the_heatmaps(ce):
    fv, heat = _pngs(ce, "jv-ce-fv"), _pngs(ce, "jv-ce-heat")
    ce.image_slider.value = 5
    assert _pngs(ce, "jv-ce-fv") == fv and _pngs(ce, "jv-ce-heat") != heat
    assert "input #5" in ce.status.value
    ce.image_slider.value = 0


def test_click_a_concept_and_sort_by_importance(ce):
    before = ce.detail.value
    button = ce.rows.children[2].children[0]
    button.click()
    assert ce.selected == 2 and ce.detail.value != before
    assert "concept 2" in ce.detail_caption.value
    ce.class_select.value = 3
    imp = ce.importance(3)
    shown = [int(r.children[0].description.split()[-1]) for r in ce.rows.children]
    assert shown == list(np.argsort(-imp, kind="stable"))
    assert "importance for class 3" in ce.status.value
    ce.class_select.value = -1


def test_save_load_and_errors_in_place(ce, tmp_path):
    path = str(tmp_path / "c.npz")
    ce.path.value = path
    ce.save_button.click()
    assert ce.error.error == "" and "saved" in ce.status.value
    ce.path.value = str(tmp_path / "missing.npz")
    ce.load_button.click()
    assert "missing.npz" in ce.error.error  # shown in place, widget alive
    ce.path.value = path
    ce.load_button.click()
    assert ce.error.error == "" and len(ce.rows.children) == 4
    ce.method_select.value = "nmf"  # act5 is ELU: negative values
    ce.fit(wait=True)
    assert "non-negative" in ce.error.error
    ce.method_select.value = "seminmf"


def test_stop_ends_an_sae_fit_early(zoo):
    w = ConceptExplorer(
        zoo.probe,
        zoo.x_test[:60],
        "act5",
        method="topk",
        n_concepts=16,
        fit_images=30,
        max_samples=1000,
        fv_steps=0,
        importance_images=8,
        fit_options={"steps": 4000, "batch_size": 128, "chunk": 10},
    )
    w.fit()
    t0 = time.time()
    while not w.progress.description.startswith("step") and time.time() - t0 < 60:
        time.sleep(0.05)
    w.stop_button.click()
    w.thread.join(60)
    assert not w.running
    assert w.error.error == "" and w.concepts.info["steps"] < 4000
    with pytest.raises(ValueError, match="layer"):
        ConceptExplorer(zoo.probe, zoo.x_test[:10], "gap")
