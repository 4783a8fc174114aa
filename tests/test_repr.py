"""Result objects that are pictures show themselves in a notebook cell (``_repr_png_``).

Each PNG is decoded and its size checked against the layout computed here (tiles of at least
96 px, 2 px apart); the attribution overlay's pixels are checked against the blend formula.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import jaxvis as jv
from jaxvis.concepts.factor import Concepts
from jaxvis.training.recording import Recording


def _decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _strip_size(n: int, h: int, w: int) -> tuple[int, int]:
    """(height, width) of n tiles side by side, upscaled so the shorter side is >= 96 px."""
    z = -(-96 // min(h, w))
    return h * z, n * w * z + 2 * (n - 1)


@pytest.fixture(scope="module")
def demo():
    return jv.zoo.load("mnist_cnn")


def test_attribution_shows_the_map_over_its_input(demo):
    x = demo.x_test[:3]
    res = jv.attribution.saliency(demo.probe, x, target=3, abs=False)
    img = _decode(res._repr_png_())
    assert img.shape[:2] == _strip_size(3, 28, 28)  # 4x zoom: (112, 340)
    # First tile, top-left pixel of each 4x4 block: 0.4 * grey input + 0.6 * rwb(heat), where
    # rwb maps the symmetric-normalised heat to blue (-) / white (0) / red (+).
    heat = np.asarray(res.values[0, ..., 0])
    t = heat / np.abs(heat).max() / 2 + 0.5
    rwb = np.where(
        (t < 0.5)[..., None],
        np.stack([2 * t, 2 * t, np.ones_like(t)], -1),
        np.stack([np.ones_like(t), 2 - 2 * t, 2 - 2 * t], -1),
    )
    grey = np.repeat(np.asarray(x[0]), 3, axis=-1)
    want = 255 * (0.4 * grey + 0.6 * rwb)
    got = img[:112:4, :112:4].astype(np.float32)
    assert np.abs(got - want).max() <= 2.0


def test_attribution_without_inputs_shows_the_map_alone(demo):
    res = jv.attribution.saliency(demo.probe, demo.x_test[:2], target=1, abs=False)
    alone = res.__class__(values=res.values, delta=None, method="saliency")
    img = _decode(alone._repr_png_())
    assert img.shape[:2] == _strip_size(2, 28, 28)
    heat = np.asarray(res.values[0, ..., 0])
    r, c = np.unravel_index(np.argmax(np.abs(heat)), heat.shape)
    # The largest |value| is pure red (positive) or pure blue (negative).
    assert tuple(img[r * 4, c * 4]) == ((255, 0, 0) if heat[r, c] > 0 else (0, 0, 255))


def test_grad_cam_and_integrated_gradients_keep_their_inputs(demo):
    x = demo.x_test[:2]
    for res in (
        jv.attribution.grad_cam(demo.probe, x, target=2, layer="act3"),
        jv.attribution.integrated_gradients(demo.probe, x, target=2, steps=8),
    ):
        assert res.inputs is not None and np.shape(res.inputs) == x.shape
        assert _decode(res._repr_png_()).shape[:2] == _strip_size(2, 28, 28)


def test_render_result_shows_its_images(demo):
    res = jv.optvis.render(demo.probe, ["conv3:0", "conv3:1"], steps=4)
    img = _decode(res._repr_png_())
    h, w = res.images.shape[1:3]
    assert img.shape[:2] == _strip_size(2, h, w)
    z = img.shape[0] // h
    want = np.round(np.repeat(res.images[1], 3, -1) * 255) if res.images.shape[-1] == 1 else None
    got = img[::z, w * z + 2 :: z][:h, :w]
    if want is not None:
        assert np.abs(got.astype(float) - want).max() <= 1


def test_topk_and_concepts_show_tables(demo):
    res = jv.dataset.top_k(demo.probe, demo.x_test[:64], "conv3", k=5)
    img = _decode(res._repr_png_())
    assert img.shape[:2] == (res.n_channels * 6, 5 * 6)
    # Each row is sorted best first: the brightest (viridis: yellow) cell is in column 0.
    green = img[::6, ::6, 1].astype(int)
    assert np.argmax(green.max(axis=0)) == 0

    directions = np.array([[1.0, -1.0, 0.0], [0.0, 0.5, 0.5]], np.float32)
    concepts = Concepts("pca", directions, {})
    table = _decode(concepts._repr_png_())
    assert table.shape[:2] == (2 * 6, 3 * 6)
    assert tuple(table[0, 0]) == (255, 0, 0) and tuple(table[0, 6]) == (0, 0, 255)


def test_recording_shows_a_layer_over_time():
    t, h, w, c = 7, 6, 6, 4
    acts = np.random.default_rng(0).random((t, 2, h, w, c)).astype(np.float16)
    rec = Recording(
        steps=np.arange(t), images=np.zeros((2, 12, 12, 1), np.float32), activations={"a": acts}
    )
    img = _decode(rec._repr_png_())
    # 6 evenly spaced frames, each a 2x2 grid of 6x6 channels upscaled to 36 px, 1 px apart.
    tile = 2 * 36 + 1
    assert img.shape[:2] == _strip_size(6, tile, tile)
    empty = Recording(steps=np.arange(2), images=np.zeros((1, 4, 4, 1), np.float32))
    assert empty._repr_png_() is None
