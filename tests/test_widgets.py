"""Headless tests of jaxvis.widgets on tiny models (no browser: tests/test_browser.py does that).

Each test drives a widget the way the front-end would (setting trait values from Python) and
checks what would be on screen: PNG bytes, labels, bars, error boxes.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

import jaxvis as jv
from jaxvis.widgets import (
    ChannelGrid,
    ErrorBox,
    FilterGrid,
    LayerExplorer,
    ModelSummary,
    WeightHistograms,
)
from jaxvis.widgets.channel_grid import GridSpec, LayerGrids

TRACES = {"n": 0}  # how often the tiny model's __call__ is traced (Python runs only when tracing)


class Tiny(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, cin: int = 1, n_classes: int = 3) -> None:
        self.conv1 = nnx.Conv(cin, 4, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 6, (3, 3), strides=2, rngs=rngs)
        self.dense = nnx.Linear(6 * 4 * 4, n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        TRACES["n"] += 1
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        return self.dense(x.reshape(x.shape[0], -1))


class FlakyProbe(jv.Probe):
    """A probe whose forward pass (``run``, what the Layer Explorer calls) raises while ``fail``."""

    fail = False

    def run(self, x, layers=None):
        if self.fail:
            raise RuntimeError("probe exploded on purpose")
        return super().run(x, layers)


def make_probe(seed: int = 0, cin: int = 1, cls: type = jv.Probe) -> jv.Probe:
    return cls(
        Tiny(nnx.Rngs(seed), cin),
        input_shape=(8, 8, cin),
        class_names=["cat", "dog", "eel"],
    )


@pytest.fixture(scope="module")
def probe() -> jv.Probe:
    return make_probe()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def has_class(widget, cls: str) -> bool:
    return cls in widget._dom_classes


# --------------------------------------------------------------------------- ChannelGrid


def test_channel_grid_geometry_matches_png():
    grid = ChannelGrid()
    n, h, w = 5, 4, 6
    tiles = np.stack([np.full((h, w), k, np.float32) for k in range(n)])
    grid.show_tiles(tiles, ncols=3, scale=2, zoom=3.0, normalize="layer", spacing=1)
    img = decode(grid.png)
    assert (grid.rows, grid.cols, grid.n_tiles) == (2, 3, 5)
    assert (grid.tile_h, grid.tile_w, grid.spacing, grid.zoom) == (8, 12, 1, 3.0)
    assert img.shape[:2] == (grid.img_height, grid.img_width) == (2 * 8 + 1, 3 * 12 + 2)
    for k in range(n):
        x, y, tw, th = grid.tile_rect(k)
        patch = img[y : y + th, x : x + tw, 0]
        assert (patch == round(255 * k / (n - 1))).all(), k  # tile k sits where we say it does
        assert grid.tile_at(x + tw / 2, y + th / 2) == k
    assert (img[:, 12, :] == 255).all()  # the 1 px gap after the first column
    assert grid.tile_at(12.5, 3) == -1  # in a gap
    assert grid.tile_at(2 * 13 + 5, 9 + 5) == -1  # the empty sixth cell
    assert grid.labels == [f"ch {k}" for k in range(n)]
    assert has_class(grid, "jv-channel-grid")


def test_channel_grid_validates_labels_and_resets_selection():
    grid = ChannelGrid(selected=7)
    with pytest.raises(ValueError, match="labels"):
        grid.show_tiles(np.zeros((3, 4, 4)), labels=["a", "b"])
    grid.show_tiles(np.zeros((3, 4, 4)), labels=["a", "b", "c"])
    assert grid.selected == -1  # index 7 no longer exists
    assert grid.zoom >= 32 / (4 * grid.tile_w / 4)  # auto zoom: tiles >= 32 px on screen
    with pytest.raises(ValueError, match="tiles"):
        grid.show_tiles(np.zeros((4, 4)))


def test_channel_grid_esm_is_shipped_in_package():
    esm = ChannelGrid._esm
    text = str(esm)
    assert "export default" in text and "jv-grid-img" in text and "selected" in text


# --------------------------------------------------------------------------- LayerExplorer


def test_layer_explorer_builds_all_layers(probe, images):
    ex = LayerExplorer(probe, images, labels=[0, 1, 2, 0, 1, 2])
    assert not ex.error.error
    assert has_class(ex, "jv-layer-explorer")
    assert has_class(ex.slider, "jv-image-slider") and ex.slider.continuous_update
    assert ex.slider.max == len(images) - 1
    assert ex.grids.names == list(probe.layer_names) and has_class(ex.grids, "jv-layer-grids")
    assert all(png[:4] == b"\x89PNG" for png in ex.grids.pngs)
    assert ex.grids.geometry_of("conv1")["n_tiles"] == 4
    assert ex.grids.geometry_of("conv2")["n_tiles"] == 6
    dense = ex.grids.geometry_of("dense")  # 3 units -> one strip of 1x1 tiles
    assert (dense["rows"], dense["cols"], dense["n_tiles"]) == (1, 3, 3)
    acts = probe.activations(images[:1])
    want = np.asarray(acts["dense"][0])
    got = [float(label.split(": ")[1]) for label in ex.grids.labels_of("dense")]
    np.testing.assert_allclose(got, want, atol=0.006)
    conv_lo = float(np.asarray(acts["conv2"][0, ..., 5]).min())
    label = ex.grids.labels_of("conv2")[5]
    assert label.startswith("ch 5: [") and abs(float(label[7:].split(",")[0]) - conv_lo) < 0.006
    assert list(ex.bars.x) == ["cat", "dog", "eel"]
    np.testing.assert_allclose(ex.bars.y, jax.nn.softmax(probe(images[:1])[0]), rtol=1e-5)
    assert "label <b>cat</b>" in ex.caption.value and "predicted" in ex.caption.value
    assert ex.input_image.value[:4] == b"\x89PNG" and ex.enlarged.value[:4] == b"\x89PNG"
    assert set(ex.last_timing) == {"compute", "render", "total"}


def test_slider_move_updates_grids_and_bars(probe, images):
    ex = LayerExplorer(probe, images)
    before = {name: ex.grids.png(name) for name in ex.grids.names}
    bars0, input0, enlarged0 = np.array(ex.bars.y), ex.input_image.value, ex.enlarged.value
    ex.slider.value = 3
    assert not ex.error.error
    assert ex.grids.png("conv1") != before["conv1"]
    assert ex.grids.png("conv2") != before["conv2"]
    assert ex.input_image.value != input0 and ex.enlarged.value != enlarged0
    assert not np.allclose(ex.bars.y, bars0)
    np.testing.assert_allclose(ex.bars.y, jax.nn.softmax(probe(images[3:4])[0]), rtol=1e-5)
    assert list(ex.bars.color) == [float(k == np.argmax(ex.bars.y)) for k in range(3)]
    np.testing.assert_allclose(
        ex.acts["conv2"], np.asarray(probe.activations(images[3:4], "conv2")["conv2"][0])
    )
    assert ex.caption.value.startswith("image 3 / 5")


def test_slider_move_is_few_messages(probe, images, monkeypatch):
    """All layer grids travel in one message; a move sends a handful, not one per layer."""
    import ipywidgets

    ex = LayerExplorer(probe, images)
    sent = []
    original = ipywidgets.Widget.send_state

    def counting(self, key=None):
        sent.append(type(self).__name__)
        return original(self, key)

    monkeypatch.setattr(ipywidgets.Widget, "send_state", counting)
    ex.slider.value = 1
    assert sent.count("LayerGrids") == 1
    assert len(sent) <= 8, sent


def test_layer_grids_geometry_and_selection():
    grids = LayerGrids()
    a = np.stack([np.full((4, 4), k, np.float32) for k in range(3)])
    specs = [
        GridSpec("a", a, "A", options={"normalize": "layer", "scale": 2}),
        GridSpec("b", np.zeros((5, 1, 1)), labels=list("vwxyz")),
    ]
    grids.show(specs)
    assert grids.names == ["a", "b"] and grids.titles == ["A", ""]
    g = grids.geometry_of("a")
    assert (g["rows"], g["cols"], g["tile_w"], g["n_tiles"]) == (2, 2, 8, 3)
    img = decode(grids.png("a"))
    assert img.shape[:2] == (g["img_height"], g["img_width"]) == (17, 17)
    assert (img[9:17, 0:8] == 255).all() and (img[0:8, 0:8] == 0).all()  # tile 2 white, 0 black
    assert grids.labels_of("b") == list("vwxyz")
    grids.select("b", 4)
    assert grids.selected == (1, 4) and grids.selected_name == "b"
    with pytest.raises(ValueError, match="tile"):
        grids.select("b", 5)
    with pytest.raises(ValueError, match="name"):
        grids.select("c", 0)
    grids.show(specs[:1])  # grid "b" is gone: the selection goes too
    assert grids.selected == (-1, -1) and grids.selected_name is None


def test_click_on_tile_enlarges_that_channel(probe, images):
    ex = LayerExplorer(probe, images)
    assert ex.layer_select.value == "conv1" and ex.grids.selected == (0, 0)
    enlarged0 = ex.enlarged.value
    shown = []
    ex.enlarged_info.observe(lambda ch: shown.append(ch["new"]), "value")
    ex.grids.selected = (1, 4)  # what a click on tile 4 of the second grid (conv2) does
    assert not ex.error.error
    assert len(shown) == 1 and "conv2" in shown[0]  # one redraw, no flash of another layer
    assert ex.layer_select.value == "conv2" and ex.channel_slider.value == 4
    assert ex.channel_slider.max == 5
    assert "conv2" in ex.enlarged_info.value and "channel 4" in ex.enlarged_info.value
    assert ex.enlarged.value != enlarged0
    assert ex.grids.selected == (1, 4) and ex.grids.selected_name == "conv2"
    tile = np.asarray(probe.activations(images[:1], "conv2")["conv2"][0, ..., 4])
    img = decode(ex.enlarged.value)
    assert img.shape[0] == img.shape[1] and img.shape[0] % tile.shape[0] == 0
    f = img.shape[0] // tile.shape[0]  # the brightest cell of the map is the largest value
    lum = img[::f, ::f].astype(float).sum(-1)
    assert np.unravel_index(lum.argmax(), lum.shape) == np.unravel_index(tile.argmax(), tile.shape)
    ex.channel_slider.value = 1  # the channel slider moves the highlight too
    assert ex.grids.selected == (1, 1) and "channel 1" in ex.enlarged_info.value
    ex.grids.selected = (2, 2)
    assert ex.layer_select.value == "dense" and "unit 2" in ex.enlarged_info.value


def test_callback_error_is_shown_and_widget_recovers(images):
    probe = make_probe(cls=FlakyProbe)
    ex = LayerExplorer(probe, images)
    png0 = ex.grids.png("conv1")
    probe.fail = True
    ex.slider.value = 2  # must not raise
    assert "probe exploded on purpose" in ex.error.error
    assert 'class="jv-error"' in ex.error.value and "RuntimeError" in ex.error.value
    probe.fail = False
    ex.slider.value = 4
    assert ex.error.error == "" and "jv-error" not in ex.error.value
    assert ex.grids.png("conv1") != png0 and ex.caption.value.startswith("image 4")
    ex.select("conv2", 99)  # a bad selection is shown, not raised
    assert "channel must be in [0, 6)" in ex.error.error
    ex.select("conv2", 5)
    assert ex.error.error == "" and ex.channel_slider.value == 5


def test_slider_does_not_recompile(images):
    probe = make_probe(seed=3)
    ex = LayerExplorer(probe, images)
    after_first = TRACES["n"]
    for i in (1, 2, 5, 0, 3):
        ex.slider.value = i
    ex.normalize_toggle.value = "layer"
    ex.grids.selected = (1, 2)
    assert not ex.error.error
    assert TRACES["n"] == after_first  # same shape -> the jitted functions were reused
    probe.activations(images[:2])  # a new batch shape does trace: the counter can move
    assert TRACES["n"] > after_first


def test_layer_explorer_validates_arguments(probe, images):
    with pytest.raises(TypeError, match="probe"):
        LayerExplorer(object(), images)
    with pytest.raises(ValueError, match="images"):
        LayerExplorer(probe, images[0])
    with pytest.raises(ValueError, match="images"):
        LayerExplorer(probe, np.zeros((2, 9, 9, 1), np.float32))
    with pytest.raises(TypeError, match="images"):
        LayerExplorer(probe, (images * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="images"):
        LayerExplorer(probe, images[:0])
    with pytest.raises(ValueError, match="labels"):
        LayerExplorer(probe, images, labels=[1, 2])
    with pytest.raises(ValueError, match="unknown layer"):
        LayerExplorer(probe, images, layers=["conv9"])
    ex = LayerExplorer(probe, images[:1], layers=["conv2"])  # one image, one layer
    assert ex.grids.names == ["conv2"] and ex.slider.disabled


def test_per_layer_normalisation_toggle_changes_grid(probe, images):
    ex = LayerExplorer(probe, images)
    png = ex.grids.png("conv1")
    ex.normalize_toggle.value = "layer"
    assert not ex.error.error and ex.grids.png("conv1") != png


# --------------------------------------------------------------------------- other widgets


def test_model_summary_lists_layers(probe):
    s = ModelSummary(probe)
    assert has_class(s, "jv-model-summary")
    for name in probe.layer_names:
        assert f"<code>{name}</code>" in s.value
    assert s.total_params == sum(layer.n_params for layer in probe.layers) > 0
    assert f"{s.total_params:,}" in s.value and "kernel_size=3×3" in s.value
    with pytest.raises(TypeError, match="probe"):
        ModelSummary({"conv": 1})


def test_filter_grid_tiles_and_selection(probe):
    fg = FilterGrid(probe)
    assert has_class(fg, "jv-filter-grid") and fg.layer == "conv1" and not fg.error.error
    assert [v for _, v in fg.layer_select.options] == ["conv1", "conv2"]
    fg.layer_select.value = "conv2"
    kernel = probe.weights("conv2")["conv2"]["kernel"]  # (3, 3, 4, 6)
    assert (fg.grid.rows, fg.grid.cols, fg.grid.n_tiles) == (6, 4, 24)
    assert fg.grid.labels[4 * 5 + 2].startswith("out 5 ← in 2: [")
    fg.select(5, 2)
    assert "out 5 ← in 2" in fg.info.value and not fg.error.error
    assert f"{kernel[0, 0, 2, 5]:+.2f}" in fg.info.value  # the kernel's numbers are listed
    img = decode(fg.grid.png)  # the most positive weight of the layer is pure red
    o, i = np.unravel_index(np.argmax(kernel.max(axis=(0, 1)).T), (6, 4))
    x, y, tw, th = fg.grid.tile_rect(int(o) * 4 + int(i))
    assert (img[y : y + th, x : x + tw] == [255, 0, 0]).all(-1).any()
    with pytest.raises(ValueError, match="out_channel"):
        fg.select(6, 0)
    with pytest.raises(ValueError, match="layer"):
        FilterGrid(probe, "dense")


def test_filter_grid_rgb_first_layer():
    rgb = make_probe(cin=3)
    fg = FilterGrid(rgb)
    assert fg.rgb and fg.grid.n_tiles == 4 and fg.grid.labels[0].startswith("filter 0:")
    fg.layer_select.value = "conv2"
    assert not fg.rgb and fg.grid.n_tiles == 24


def test_filter_grid_without_conv_layers_says_so_in_place():
    def mlp(params, x):
        return jv.tap("out", x.reshape(x.shape[0], -1) @ params["w"])

    p = jv.Probe(mlp, {"w": jnp.ones((64, 2))}, input_shape=(8, 8, 1))
    fg = FilterGrid(p)
    assert "no convolution layers" in fg.caption.value and "out" in fg.caption.value
    assert fg.layer_select.disabled and fg.grid.n_tiles == 0 and not fg.error.error
    with pytest.raises(ValueError, match="layer must be a convolution layer"):
        FilterGrid(p, "out")


def test_weight_histograms_compare_on_shared_bins(probe):
    other = make_probe(seed=1)
    wh = WeightHistograms(probe, compare_to=other, names=("trained", "init"), bins=12)
    assert has_class(wh, "jv-weight-histograms") and not wh.error.error
    assert list(wh.weights)[:2] == ["conv1.kernel", "conv1.bias"]
    wh.layer_select.value = "conv2.kernel"
    a, b = probe.weights()["conv2"]["kernel"], other.weights()["conv2"]["kernel"]
    np.testing.assert_array_equal(wh.bars[0].x, wh.bars[1].x)
    assert len(wh.bars[0].x) == 12
    assert wh.bars[0].y.sum() == a.size and wh.bars[1].y.sum() == b.size
    edges = np.histogram_bin_edges(np.concatenate([a.ravel(), b.ravel()]), 12)
    np.testing.assert_array_equal(wh.bars[1].y, np.histogram(b, edges)[0])
    assert "trained" in wh.stats.value and "init" in wh.stats.value
    assert wh.bars[1].visible


def test_weight_histograms_accepts_pytrees_and_validates(probe):
    params = {"enc": {"kernel": np.arange(12.0).reshape(3, 4), "bias": np.zeros(4)}}
    wh = WeightHistograms(params)
    assert list(wh.weights) == ["enc.kernel", "enc.bias"] and not wh.bars[1].visible
    assert wh.bars[0].y.sum() == 12
    assert list(WeightHistograms(probe.params).weights) == list(WeightHistograms(probe).weights)
    with pytest.raises(TypeError, match="compare_to"):
        WeightHistograms(probe, compare_to=params)
    with pytest.raises(ValueError, match="compare_to"):
        WeightHistograms(params, compare_to={"enc": {"kernel": np.zeros((3, 4))}})
    with pytest.raises(TypeError, match="params_or_probe"):
        WeightHistograms(None)
    with pytest.raises(ValueError, match="bins"):
        WeightHistograms(params, bins=0)


def test_error_box_guard():
    box = ErrorBox()

    @box.guard
    def f(x):
        if x < 0:
            raise ValueError("x must be >= 0")
        return x

    assert f(-1) is None and "x must be &gt;= 0" in box.value and box.error
    assert f(2) == 2 and box.value == "" and box.error == ""
