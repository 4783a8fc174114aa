"""The ActivationAtlas widget and FeatureVis's data set strip and atlas tab (Python side)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import jaxvis as jv

N = 160


@pytest.fixture(scope="module")
def shapes():
    data = jv.zoo.load_data("shapes_cnn")
    return jv.zoo.load("shapes_cnn").probe, data.x_test[:N], data.y_test[:N]


@pytest.fixture(scope="module")
def built(shapes):
    probe, x, y = shapes
    aa = jv.widgets.ActivationAtlas(probe, x, labels=y, layer="act5", grid=4, steps=16)
    aa.build(wait=True)
    return aa


def test_build_shows_the_atlas_and_a_click_shows_the_cell(shapes, built):
    probe, x, y = shapes
    aa = built
    assert aa.error.error == "", aa.error.error
    at = aa.atlas
    assert at is not None and at.grid == (4, 4)
    assert aa.grid.png.startswith(b"\x89PNG") and aa.grid.n_tiles == 16
    assert aa.progress.value == aa.progress.max == 16  # the render's last step
    assert "done" in aa.status.value
    # the busiest cell: its images are the images whose samples fell in it
    flat = int(np.argmax(at.counts))
    row, col = divmod(flat, 4)
    aa.grid.selected = flat  # what a click in the browser sends
    members = np.unique(at.sample_image[at.sample_cell == flat])
    np.testing.assert_array_equal(aa.cell_images, x[members[:16]])
    assert f"{len(members)} image(s)" in aa.cell_title.value
    assert bytes(aa.cell_view.value).startswith(b"\x89PNG")
    # class attribution: the shares of the cell's labels, in percent
    share = np.bincount(y[members], minlength=8) / len(members)
    top = int(np.argmax(share))
    shown = re.findall(r'data-class="(\d+)".*?(\d+)%</div>', aa.attribution.value)
    assert int(shown[0][0]) == top and int(shown[0][1]) == round(100 * share[top])
    assert aa.grid.labels[flat].startswith(f"({row}, {col}): {len(members)} samples")


def test_select_checks_the_cell(built):
    with pytest.raises(ValueError, match="row must be"):
        built.select(9, 0)


def test_stop_before_render_keeps_nothing_and_errors_show_in_place(shapes):
    probe, x, y = shapes
    aa = jv.widgets.ActivationAtlas(probe, x, labels=y, layer="act5", grid=3, steps=8)
    aa._stop.set()  # Stop pressed: the first progress report ends the build
    aa._on_progress = lambda p, f=aa._on_progress: f(p) and False
    aa.build(wait=True)
    assert aa.atlas is None and "stopped before rendering" in aa.status.value
    bad = jv.widgets.ActivationAtlas(probe, x, layer="act5", method="pca")
    bad.build_button.click()
    bad.wait()
    assert "method must be one of" in bad.error.error
    assert "jv-error" in bad.error.value and not bad.build_button.disabled


def test_featurevis_compare_strip_and_atlas_tab(shapes):
    probe, x, y = shapes
    fv = jv.widgets.FeatureVis(probe, layer="act5", channel=5, steps=16, dataset=x, labels=y)
    assert fv.tabs.get_title(1) == "atlas" and isinstance(fv.atlas, jv.widgets.ActivationAtlas)
    fv.run(wait=True)
    assert fv.error.error == "", fv.error.error
    assert bytes(fv.compare.value).startswith(b"\x89PNG") and "channel 5" in fv.compare_title.value
    # the top-9: an independent ranking of the images by their max activation of channel 5
    act = np.asarray(probe.activations(x, ["act5"])["act5"])[..., 5].reshape(N, -1).max(1)
    want = np.argsort(-act, kind="stable")[:9]
    np.testing.assert_array_equal(fv.top_images("act5", 5), x[want])
    with pytest.raises(ValueError, match="no data set"):
        jv.widgets.FeatureVis(probe, layer="act5").top_images("act5", 0)
