"""The widgets scale with the model: capped tiles per grid, paging, sorting, search by index,
only visible grids re-rendered, bytes per update bounded (issue 13).

A cheap Linen model with a 2,048-channel layer stands in for a ResNet-50's last stage; the
slow test runs the real ResNet-50 at 224x224 (random weights).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.widgets import LayerExplorer
from jaxvis.widgets.feature_vis import preview_image
from jaxvis.widgets.layer_explorer import PAGE, channel_order

BIG = 2048
BUDGET = 1_500_000  # PNG bytes per image-slider move


class Wide(nn.Module):
    """conv 16 ch at 32x32 -> conv 64 ch at 16x16 -> 1x1 conv to 2,048 ch at 4x4 -> head."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2, name="conv2")(x))
        x = nn.max_pool(x, (4, 4), strides=(4, 4))
        x = nn.relu(nn.Conv(BIG, (1, 1), name="wide")(x))
        return nn.Dense(10, name="head")(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def wide():
    module = Wide()
    variables = module.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))
    probe = jv.Probe(module, variables, input_shape=(32, 32, 3))
    images = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    return probe, images


def test_grids_are_capped_and_pages_follow_the_sort(wide):
    probe, images = wide
    ex = LayerExplorer(probe, images, sort="mean")
    ex.select("wide", 0)
    assert not ex.error.error
    assert ex.grid.n_tiles == PAGE and ex.page_slider.max == BIG // PAGE - 1
    assert all(g["n_tiles"] <= PAGE for g in ex.grids.geometry)
    act = np.asarray(probe.activations(images[:1], "wide")["wide"])[0]  # (4, 4, 2048)
    want = np.argsort(-act.mean(axis=(0, 1)), kind="stable")
    np.testing.assert_array_equal(ex.order, want)
    ex.page_slider.value = 1  # the second page: channels 64..127 of the sorted order
    shown = [int(label.split(":")[0].split()[1]) for label in ex.grid.labels]
    assert shown == want[PAGE : 2 * PAGE].tolist()
    assert "65–128 of 2048" in ex.page_info.value
    ex.sort_toggle.value = "max"  # a new sort starts on its first page: the top channels
    top = np.argsort(-act.max(axis=(0, 1)), kind="stable")
    np.testing.assert_array_equal(ex.order, top)
    assert ex.page_slider.value == 0 and ex.grid.labels[0].startswith(f"ch {top[0]}:")
    ex.sort_toggle.value = "index"
    ex.page_slider.value = 2
    assert ex.grid.labels[0].startswith("ch 128:")


def test_search_by_index_jumps_to_its_page_and_a_click_maps_back(wide):
    probe, images = wide
    ex = LayerExplorer(probe, images, sort="max")
    ex.select("wide", 0)
    ex.channel_slider.value = 1500  # search a channel by index
    position = int(np.flatnonzero(ex.order == 1500)[0])
    assert ex.page_slider.value == position // PAGE
    assert ex.grid.selected == position % PAGE
    assert ex.grid.labels[ex.grid.selected].startswith("ch 1500:")
    assert "channel 1500" in ex.enlarged_info.value
    ex.grid.selected = 7  # a click on the page's eighth tile
    assert ex.channel_slider.value == int(ex.order[PAGE * ex.page_slider.value + 7])
    assert not ex.error.error


def test_slider_move_renders_only_what_is_on_screen(wide):
    probe, images = wide
    ex = LayerExplorer(probe, images)
    ex.select("wide", 3)
    ex.grids.expanded = [False] * len(ex.grids.names)  # every row closed
    ex.slider.value = 1
    t = ex.last_timing
    assert t["grids"] == 1  # the selected layer's page only
    assert set(ex.acts) == {"wide"}  # no other layer kept
    closed_bytes = t["bytes"]
    open_ = [False] * len(ex.grids.names)
    open_[ex.grids.index("conv1")] = True  # what a click on conv1's title does
    ex.grids.expanded = open_
    assert ex.grids.png("conv1")[:4] == b"\x89PNG" and ex.grids.png("conv2") == b""
    assert set(ex.acts) == {"wide", "conv1"}
    ex.slider.value = 2
    assert ex.last_timing["grids"] == 2 and ex.last_timing["bytes"] > closed_bytes
    ex.grids.selected = (ex.grids.index("conv1"), 5)  # a click on a thumbnail tile
    assert ex.layer_select.value == "conv1" and ex.channel_slider.value == 5
    assert not ex.error.error


def test_thumbnails_average_big_maps_down():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(8, (3, 3), name="big")(x).mean(axis=(1, 2))

    net = Net()
    variables = net.init(jax.random.key(0), np.zeros((1, 112, 112, 3), np.float32))
    probe = jv.Probe(net, variables, input_shape=(112, 112, 3))
    ex = LayerExplorer(probe, np.zeros((1, 112, 112, 3), np.float32) + 0.5)
    assert ex.grids.geometry_of("big")["tile_h"] == 28  # 112 / 4, no upscaling
    assert "maps ÷4" in ex.grids.titles[0]
    assert ex.grid.tile_h == 112  # the page is at full resolution
    assert ex.page_size == 20  # 64 maps of 112x112 would be 800k pixels: 20 a page


@pytest.mark.slow
def test_resnet50_slider_move_sends_under_budget():
    module = jv.zoo.resnet50()
    variables = jv.zoo.init_variables(module, seed=0, input_shape=(224, 224, 3))
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3), input_range=(-3.0, 3.0))
    images = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).clip(-3, 3)
    ex = LayerExplorer(probe, images.astype(np.float32))
    assert len(ex.grids.names) > 100 and not any(ex.grids.expanded)  # big: rows start closed
    for layer in ("bn1", "layer4_2"):  # 64 maps of 112x112; 2,048 of 7x7
        ex.select(layer, 0)
        assert not ex.error.error
        ex.slider.value = (ex.slider.value + 1) % 3
        assert not ex.error.error
        assert ex.last_timing["bytes"] < BUDGET and ex.last_timing["grids"] == 1
        assert set(ex.acts) == {layer}
    assert channel_order(np.zeros((3, 1, 1)), "max").tolist() == [0, 1, 2]
    probs = np.asarray(jax.nn.softmax(probe(images[ex.index : ex.index + 1])[0]))
    assert len(ex.bars.x) == 10  # the ten likeliest of 1,000 classes, likeliest first
    assert list(ex.bars.x) == [str(k) for k in np.argsort(-probs, kind="stable")[:10]]


def test_feature_vis_whole_layer_optimises_one_block_of_a_wide_layer(wide):
    probe, _ = wide
    fv = jv.widgets.FeatureVis(probe, layer="wide", channel=70)
    assert fv.channel_slider.max == BIG - 1
    fv.whole_layer.value = True
    assert fv.grid_channels() == list(range(64, 128))  # the block holding channel 70
    assert fv.objective().batch == 64
    big = np.random.default_rng(0).uniform(size=(20, 224, 224, 3))
    assert preview_image(big).shape[:2] == (4 * 112 + 6, 5 * 112 + 8)


def test_feature_vis_keeps_a_bounded_number_of_frames(wide):
    from jaxvis.widgets.feature_vis import MAX_FRAMES

    fv = jv.widgets.FeatureVis(wide[0], layer="wide")
    history = np.zeros((1, 1))
    for step in range(300):  # a long run's previews
        fv._show(np.full((1, 32, 32, 3), step / 300, np.float32), history, step)
    fv._show(np.ones((1, 32, 32, 3), np.float32), history, 300, final=True)
    assert len(fv.frames) <= MAX_FRAMES + 1 and fv.frames[-1].min() == 255  # the last kept
    assert fv.frames[0].max() == 0  # and the first


def test_unit_explorer_tiles_of_big_images_are_averaged_down():
    from jaxvis.widgets.unit_explorer import _shrink, _with_box

    rgb = np.zeros((224, 224, 3), np.uint8)
    assert _shrink(rgb)[0].shape == (112, 112, 3) and _shrink(rgb)[1] == 2
    boxed = _with_box(rgb, (0, 0, 112, 112))  # the box scales with the image
    assert boxed.shape == (112, 112, 3) and tuple(boxed[0, 0]) == (230, 40, 40)
    assert tuple(boxed[56, 56]) == (0, 0, 0) and tuple(boxed[55, 20]) == (230, 40, 40)


def test_training_replay_frames_are_capped_for_wide_big_layers():
    from jaxvis.training import Recording
    from jaxvis.widgets.training_replay import MAX_CHANNELS, MAX_MAP_PX

    acts = np.random.default_rng(0).normal(size=(2, 2, 112, 112, 256)).astype(np.float16)
    rec = Recording(
        steps=np.arange(2, dtype=np.int64),
        images=np.zeros((2, 224, 224, 3), np.float32),
        activations={"stem": acts},
        metrics={"loss": np.ones(2)},
        histograms={},
        bin_edges={},
        stats={},
        labels=np.arange(2),
        meta={"value_range": [-3.0, 3.0]},
    )
    replay = jv.widgets.TrainingReplay(rec)
    frame = replay.render_frame(0, "stem")  # 2 rows of 32 maps of 56 px, not 256 of 112
    assert frame.shape[1] < (MAX_CHANNELS + 2) * (MAX_MAP_PX + 2)
    assert frame.shape[0] < 2 * 2 * (MAX_MAP_PX + 2)
    assert len(replay.png(0, "stem")) < 600_000
