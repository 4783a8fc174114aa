"""Headless tests of jv.widgets.Attribution (the browser test drives the same widget)."""

from __future__ import annotations

import numpy as np
import pytest
from test_attribution_helpers import images, small_probe

import jaxvis as jv
from jaxvis.widgets.attribution import AttributionExplorer as Attribution


@pytest.fixture(scope="module")
def widget() -> Attribution:
    probe = small_probe(seed=11)
    return Attribution(probe, images(4, seed=2), labels=[0, 1, 2, 0], steps=16)


def test_widget_builds_with_classes_and_predicted_class_first(widget: Attribution) -> None:
    assert "jv-attribution" in widget._dom_classes
    assert "jv-attr-image" in widget.view._dom_classes
    assert "jv-attr-class" in widget.target._dom_classes
    assert "jv-attr-alpha" in widget.alpha._dom_classes
    probs = np.asarray(widget.probe(widget.x))[0]
    assert widget.target.value == int(np.argmax(probs))
    assert widget.target.options[0][1] == int(np.argmax(probs))
    assert "p=" in widget.target.options[0][0]
    assert widget.overlay_png.startswith(b"\x89PNG")
    assert widget.gap is not None and widget.errors.error == ""


def test_class_alpha_and_opacity_update_the_overlay_without_compiling(widget: Attribution) -> None:
    widget.method.value = "integrated_gradients"
    first = widget.overlay_png
    other = [v for _, v in widget.target.options if v != widget.target.value][0]
    before = jv.attribution.trace_counts()
    widget.target.value = other
    assert widget.overlay_png != first
    assert jv.attribution.trace_counts() == before
    np.testing.assert_array_equal(widget.result.target, [other])
    widget.method.value = "interior_gradients"
    before = jv.attribution.trace_counts()
    shown = widget.overlay_png
    widget.alpha.value = 0.3
    assert widget.overlay_png != shown
    widget.alpha.value = 0.6
    assert jv.attribution.trace_counts() == before
    shown = widget.overlay_png
    widget.opacity.value = 0.2
    assert widget.overlay_png != shown


def test_every_method_and_the_image_slider(widget: Attribution) -> None:
    for _, name in widget.method.options:
        widget.method.value = name
        assert widget.errors.error == "", name
        assert widget.result is not None and widget.result.method
    widget.index.value = 2
    assert "image 2" in widget.caption.value and "label" in widget.caption.value
    widget.cmap.value = "viridis"
    assert widget.errors.error == ""


def test_gap_warning_and_raise_steps_button(widget: Attribution) -> None:
    widget.method.value = "integrated_gradients"
    widget.baseline.value = "black"
    widget.steps.value = 1
    if widget.gap is not None and widget.gap > 0.05:
        assert "jv-attr-warning" in widget.delta.value
        assert widget.fix.layout.display != "none"
        widget.fix.click()
        assert widget.gap <= 0.05 and widget.steps.value > 1
    assert "jv-attr-ok" in widget.delta.value
    assert widget.fix.layout.display == "none"


def test_sanity_tab(widget: Attribution) -> None:
    widget.sanity_method.value = "saliency"
    widget.sanity_run.click()
    assert widget.errors.error == ""
    res = widget.sanity_result
    assert res is not None and res.layers[0] == "original"
    assert list(widget.sanity_lines.x) == list(res.layers)
    assert bytes(widget.sanity_maps.value).startswith(b"\x89PNG")


def test_errors_are_shown_in_place_and_cleared(widget: Attribution) -> None:
    original = widget.compute

    def broken() -> None:
        raise ValueError("target class 99 is out of range")

    widget.compute = broken  # type: ignore[method-assign]
    widget.noise.value = 0.3 if widget.noise.value != 0.3 else 0.2
    widget.method.value = "smoothgrad"
    assert "out of range" in widget.errors.error
    assert "jv-error" in widget.errors.value
    widget.compute = original  # type: ignore[method-assign]
    widget.noise.value = 0.1
    assert widget.errors.error == "" and widget.errors.value == ""


def test_bad_arguments_raise() -> None:
    probe = small_probe()
    with pytest.raises(TypeError, match="Probe"):
        Attribution(object(), images(2))
    with pytest.raises(ValueError, match="NaN"):
        Attribution(probe, np.full((2, 8, 8, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="method"):
        Attribution(probe, images(2), method="lime")
