"""Headless tests of ``jv.widgets.FeatureVis``: run, live preview, stop, grid, errors, save."""

from __future__ import annotations

import time

import pytest

import jaxvis as jv
from jaxvis.widgets.feature_vis import FeatureVis

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def probe():
    try:
        return jv.zoo.load("mnist_cnn").probe
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_run_updates_preview_progress_and_curve(probe, tmp_path):
    fv = FeatureVis(probe, layer="conv5", channel=3, steps=16, preview_every=8, out_dir=tmp_path)
    assert "jv-feature-vis" in fv._dom_classes
    assert fv.channel_slider.max == 15 and fv.channel_slider.value == 3
    fv.param.value = "pixel"
    fv.run_button.click()
    fv.wait(120)
    assert fv.error.error == ""
    assert fv.result is not None and fv.result.images.shape == (1, 28, 28, 1)
    assert bytes(fv.preview.value).startswith(PNG)
    assert fv.progress.value == 16 and len(fv.curve.y) == 16
    assert fv.previews >= 2 and "done after 16 steps" in fv.status.value
    assert not fv.run_button.disabled and fv.stop_button.disabled
    png, gif = fv.save()
    assert png.read_bytes().startswith(PNG) and gif.read_bytes().startswith(b"GIF8")


def test_stop_ends_the_run_and_keeps_the_last_image(probe):
    fv = FeatureVis(probe, layer="conv5", steps=1024, preview_every=4)
    fv.param.value = "pixel"
    fv.run()
    deadline = time.time() + 120
    while fv.previews < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert fv.running
    fv.stop_button.click()
    fv.wait(60)
    assert not fv.running
    assert fv.result.stopped and 0 < fv.result.steps < 1024
    assert bytes(fv.preview.value).startswith(PNG) and "stopped" in fv.status.value


def test_whole_layer_grid_and_classes(probe):
    fv = FeatureVis(probe, layer="conv3", steps=8, preview_every=8)
    fv.param.value = "pixel"
    fv.whole_layer.value = True
    fv.run(wait=True)
    assert fv.result.images.shape == (8, 28, 28, 1)
    assert fv.objective().description.startswith("channel(conv3, *)")
    fv.target.value = "class"
    assert fv.layer_select.disabled and not fv.class_select.disabled
    fv.run(wait=True)
    assert fv.result.images.shape == (10, 28, 28, 1)


def test_errors_show_in_place_and_the_widget_recovers(probe):
    fv = FeatureVis(probe, layer="conv5", steps=8, preview_every=8)
    fv.preset.value = "yosinski3"
    assert fv.param.value == "pixel" and fv.reg["decay"].value == pytest.approx(1e-4)
    fv.param.value = "fourier"
    fv.run_button.click()
    assert "act on pixels" in fv.error.error and 'class="jv-error"' in fv.error.value
    assert not fv.running
    fv.param.value = "pixel"
    fv.run_button.click()
    fv.wait(120)
    assert fv.error.error == "" and fv.result.steps == 8


def test_bad_arguments():
    with pytest.raises(TypeError, match="probe must be a jaxvis.Probe"):
        FeatureVis(object())
