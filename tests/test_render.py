"""jaxvis.render on small hand-made arrays whose pictures are known exactly."""

import io
import os

import numpy as np
import pytest
from PIL import Image

import jaxvis as jv
from jaxvis import render as R

WHITE, BLUE, RED = [255, 255, 255], [0, 0, 255], [255, 0, 0]


# --- normalize -------------------------------------------------------------------------


def test_normalize_layer_maps_min_max_to_0_1():
    out = R.normalize([0.0, 2.0, 4.0])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


def test_normalize_symmetric_keeps_zero_at_half():
    np.testing.assert_array_equal(R.normalize([-2.0, 0.0, 1.0], "symmetric"), [0.0, 0.5, 0.75])


def test_normalize_channel_is_per_last_axis():
    x = np.array([[0.0, 10.0], [2.0, 30.0]])  # channel 0: [0, 2], channel 1: [10, 30]
    np.testing.assert_array_equal(R.normalize(x, "channel"), [[0, 0], [1, 1]])
    np.testing.assert_allclose(R.normalize(x, "layer"), [[0, 1 / 3], [1 / 15, 1]], rtol=1e-6)


def test_normalize_none_only_clips():
    np.testing.assert_array_equal(R.normalize([-1.0, 0.25, 2.0], "none"), [0.0, 0.25, 1.0])


def test_normalize_vmin_vmax_fix_the_range():
    np.testing.assert_array_equal(R.normalize([0.0, 5.0, 10.0], vmin=0, vmax=5), [0, 1, 1])
    np.testing.assert_array_equal(
        R.normalize([-2.0, 0.0, 1.0], "symmetric", vmax=4), [0.25, 0.5, 0.625]
    )
    np.testing.assert_array_equal(R.normalize([0.0, 3.0], vmax=-1), [1, 1])  # all above vmax
    np.testing.assert_array_equal(R.normalize([0.0, 3.0], vmin=5), [0, 0])  # all below vmin
    np.testing.assert_array_equal(R.normalize([3.0, 3.0, 4.0], vmin=3, vmax=3), [0, 0, 1])


def test_constant_inputs_do_not_divide_by_zero():
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(R.normalize(np.full((2, 3), 7.0)), np.zeros((2, 3)))
        np.testing.assert_array_equal(R.normalize(np.zeros(4), "symmetric"), np.full(4, 0.5))
        # a constant channel gives 0, its neighbour is still stretched to [0, 1]
        x = np.array([[5.0, 0.0], [5.0, 8.0]])
        np.testing.assert_array_equal(R.normalize(x, "channel"), [[0, 0], [0, 1]])
        # symmetric: a constant non-zero map keeps its sign
        np.testing.assert_array_equal(R.normalize([3.0, 3.0], "symmetric"), [1, 1])
        np.testing.assert_array_equal(R.normalize([-3.0], "symmetric"), [0])


def test_normalize_accepts_jax_and_int_arrays():
    import jax.numpy as jnp

    np.testing.assert_array_equal(R.normalize(jnp.array([0.0, 2.0, 4.0])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(R.normalize(np.array([0, 2, 4], np.int64)), [0.0, 0.5, 1.0])


def test_to_uint8_rounds_and_clips():
    assert R.to_uint8([-0.5, 0.0, 0.5, 1.0, 2.0]).tolist() == [0, 0, 128, 255, 255]
    u = np.array([1, 2], np.uint8)
    assert R.to_uint8(u) is u


# --- colormaps -------------------------------------------------------------------------


def test_rwb_endpoints_exact():
    assert R.colorize([0.0, 0.5, 1.0], "rwb").tolist() == [BLUE, WHITE, RED]
    signed = R.normalize([-1.0, 0.0, 1.0], "symmetric")
    assert R.colorize(signed, "rwb").tolist() == [BLUE, WHITE, RED]
    assert R.colorize([0.25], "rwb").tolist() == [[128, 128, 255]]  # half way to white


def test_gray_and_viridis_endpoints():
    assert R.colorize([0.0, 0.5, 1.0], "gray").tolist() == [[0] * 3, [128] * 3, [255] * 3]
    assert R.colorize([0.0, 1.0], "viridis").tolist() == [[68, 1, 84], [253, 231, 37]]
    assert R.colorize([-3.0, 9.0], "gray").tolist() == [[0] * 3, [255] * 3]  # clipped


def test_colorize_shape_and_dtype():
    out = R.colorize(np.zeros((2, 5), np.float32), "viridis")
    assert out.shape == (2, 5, 3) and out.dtype == np.uint8


def test_viridis_lightness_increases_monotonically():
    rgb = R.colorize(np.linspace(0, 1, 256), "viridis").astype(float)
    luma = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.diff(luma).min() > -0.5  # rising, up to 8-bit rounding
    assert luma[-1] - luma[0] > 150


def test_viridis_close_to_matplotlib():
    colormaps = pytest.importorskip("matplotlib").colormaps
    ref = np.asarray(colormaps["viridis"].colors) * 255
    ours = R.colorize(np.linspace(0, 1, 256), "viridis").astype(float)
    assert np.abs(ours - ref).max() <= 6


# --- upscale ---------------------------------------------------------------------------


def test_upscale_is_exact_nearest_neighbour():
    img = np.array([[1, 2], [3, 4]], np.uint8)
    out = R.upscale(img, 2)
    assert out.dtype == np.uint8
    assert out.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert R.upscale(img, (1, 3)).tolist() == [[1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4]]
    rgb = np.arange(12).reshape(2, 2, 3)
    up = R.upscale(rgb, 3)
    assert up.shape == (6, 6, 3)
    np.testing.assert_array_equal(up[::3, ::3], rgb)
    np.testing.assert_array_equal(up[2::3, 2::3], rgb)
    assert R.upscale(img, 1).tolist() == img.tolist()


# --- grid ------------------------------------------------------------------------------

B = 255  # background
EXPECTED_2X2 = [
    [0, 1, B, 4, 5],
    [2, 3, B, 6, 7],
    [B, B, B, B, B],
    [8, 9, B, 12, 13],
    [10, 11, B, 14, 15],
]
TILES = np.arange(16, dtype=np.float64).reshape(4, 2, 2) / 255  # tile k = [[4k, 4k+1], ...]


def _gray(img):
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
    assert (img == img[..., :1]).all()
    return img[..., 0].tolist()


def test_grid_exact_layout_of_known_tiles():
    out = R.grid(TILES, tile_axis=0, spacing=1, scale=1, normalize="none")
    assert _gray(out) == EXPECTED_2X2


def test_grid_channels_last_and_list_inputs_give_the_same_layout():
    hwc = np.moveaxis(TILES, 0, -1)  # (2, 2, 4): the channels of one example
    assert _gray(R.grid(hwc, scale=1, normalize="none")) == EXPECTED_2X2
    assert _gray(R.grid(list(TILES), scale=1, normalize="none")) == EXPECTED_2X2
    assert _gray(R.grid(TILES[..., None], scale=1, normalize="none")) == EXPECTED_2X2


def test_grid_takes_a_single_map_and_jax_arrays():
    import jax.numpy as jnp

    assert _gray(R.grid(TILES[0], scale=1, normalize="none")) == [[0, 1], [2, 3]]
    hwc = jnp.asarray(np.moveaxis(TILES, 0, -1))
    assert _gray(R.grid(hwc, scale=1, normalize="none")) == EXPECTED_2X2


def test_grid_spacing_zero_and_two():
    out0 = _gray(R.grid(TILES, tile_axis=0, spacing=0, scale=1, normalize="none"))
    assert out0 == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    out2 = R.grid(TILES, tile_axis=0, spacing=2, scale=1, normalize="none", background=7)
    assert out2.shape == (6, 6, 3)
    assert (out2[2:4] == 7).all() and (out2[:, 2:4] == 7).all()
    assert out2[4:, 4:, 0].tolist() == [[12, 13], [14, 15]]


def test_grid_upscales_each_tile():
    out = R.grid(TILES[:2], tile_axis=0, scale=2, normalize="none", ncols=2)
    assert _gray(out) == [
        [0, 0, 1, 1, B, 4, 4, 5, 5],
        [0, 0, 1, 1, B, 4, 4, 5, 5],
        [2, 2, 3, 3, B, 6, 6, 7, 7],
        [2, 2, 3, 3, B, 6, 6, 7, 7],
    ]


def test_grid_automatic_scale_makes_tiles_at_least_32px():
    assert R.grid(np.zeros((7, 7, 1))).shape == (35, 35, 3)  # 7 * 5
    assert R.grid(np.zeros((28, 28, 1))).shape == (56, 56, 3)  # 28 * 2
    assert R.grid(np.zeros((32, 32, 1))).shape == (32, 32, 3)
    assert R.grid(np.zeros((28, 28, 16))).shape == (4 * 56 + 3, 4 * 56 + 3, 3)


def test_grid_empty_cells_are_background():
    out = R.grid(TILES[:3], tile_axis=0, scale=1, normalize="none", background=(1, 2, 3))
    assert out.shape == (5, 5, 3)  # 3 tiles -> 2 x 2 cells
    assert (out[3:, 3:] == [1, 2, 3]).all()
    assert (out[2, :] == [1, 2, 3]).all()
    assert out[3, 0].tolist() == [8, 8, 8]


def test_grid_ncols_and_shape():
    assert R.grid_shape(1) == (1, 1)
    assert R.grid_shape(4) == (2, 2)
    assert R.grid_shape(5) == (2, 3)
    assert R.grid_shape(10) == (3, 4)
    assert R.grid_shape(16) == (4, 4)
    assert R.grid_shape(17) == (4, 5)
    assert R.grid_shape(7, ncols=3) == (3, 3)
    assert R.grid_shape(3, ncols=8) == (1, 8)
    out = R.grid(TILES, tile_axis=0, ncols=4, scale=1, normalize="none")
    assert _gray(out) == [
        [0, 1, B, 4, 5, B, 8, 9, B, 12, 13],
        [2, 3, B, 6, 7, B, 10, 11, B, 14, 15],
    ]


def test_grid_channel_vs_layer_normalisation():
    tiles = np.array([[[0.0, 1.0]], [[0.0, 10.0]]])  # two 1x2 tiles
    per_tile = _gray(R.grid(tiles, tile_axis=0, scale=1, spacing=0))
    assert per_tile == [[0, 255, 0, 255]]
    shared = _gray(R.grid(tiles, tile_axis=0, scale=1, spacing=0, normalize="layer"))
    assert shared == [[0, 26, 0, 255]]


def test_grid_symmetric_rwb():
    tiles = np.array([[[-1.0, 0.0]], [[0.0, 0.5]]])
    out = R.grid(tiles, tile_axis=0, scale=1, spacing=0, normalize="symmetric", cmap="rwb")
    assert out[0].tolist() == [BLUE, WHITE, WHITE, [255, 128, 128]]


def test_grid_rgb_tiles_keep_their_colours():
    tiles = np.array([[[[10, 20, 30]]], [[[200, 100, 0]]]], np.uint8)  # (2, 1, 1, 3)
    out = R.grid(tiles, scale=1, spacing=1, normalize="none", background=0)
    assert out.tolist() == [[[10, 20, 30], [0, 0, 0], [200, 100, 0]]]


# --- overlay ---------------------------------------------------------------------------


def test_overlay_alpha_endpoints_and_blend():
    image = np.array([[0.0, 1.0], [0.5, 0.0]])
    heat = np.array([[-2.0, 0.0], [0.0, 2.0]])
    assert R.overlay(image, heat, alpha=0.0).tolist() == [
        [[0] * 3, [255] * 3],
        [[128] * 3, [0] * 3],
    ]
    assert R.overlay(image, heat, alpha=1.0).tolist() == [[BLUE, WHITE], [WHITE, RED]]
    half = R.overlay(image, heat, alpha=0.5)
    assert half[0, 0].tolist() == [0, 0, 128]  # black + blue
    assert half[1, 1].tolist() == [128, 0, 0]  # black + red
    assert half[0, 1].tolist() == [255, 255, 255]  # white + white


def test_overlay_upscales_a_smaller_heatmap_and_uses_image_range():
    image = np.full((4, 4, 1), -1.0)  # model input range [-1, 1]: -1 is black
    heat = np.array([[-1.0, 1.0], [1.0, -1.0]])
    out = R.overlay(image, heat, alpha=1.0, image_range=(-1.0, 1.0))
    assert out.shape == (4, 4, 3)
    assert (
        (out[:2, :2] == BLUE).all() and (out[:2, 2:] == RED).all() and (out[2:, 2:] == BLUE).all()
    )
    dark = R.overlay(image, heat, alpha=0.0, image_range=(-1.0, 1.0))
    assert (dark == 0).all()


def test_overlay_uint8_rgb_image_and_viridis():
    image = np.full((2, 2, 3), 100, np.uint8)
    out = R.overlay(image, np.array([[0.0, 1.0], [0.0, 1.0]]), cmap="viridis", normalize="layer")
    assert out[0, 0].tolist() == [84, 50, 92]  # (100 + (68, 1, 84)) / 2 rounded half to even
    assert out[0, 1].tolist() == [176, 166, 68]


# --- encoding --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7, 3), (5, 7), (3, 4, 4)])
def test_png_round_trip(shape):
    img = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    data = R.png_bytes(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(np.asarray(im), img)


def _frames(t=5, h=6, w=9):
    return np.stack([np.full((h, w, 3), 40 * k, np.uint8) for k in range(t)])


def _open_gif(data):
    return Image.open(io.BytesIO(data))


def test_gif_frame_count_size_and_timing():
    data = R.write_gif(_frames(), fps=4)
    im = _open_gif(data)
    assert data[:6] == b"GIF89a"
    assert im.n_frames == 5 and im.size == (9, 6)
    assert im.info["duration"] == 250 and im.info["loop"] == 0
    im.seek(3)
    assert (np.asarray(im.convert("RGB")) == 120).all()


def test_gif_from_float_list_of_gray_frames():
    frames = [np.full((4, 4), k / 2, np.float32) for k in range(3)]
    im = _open_gif(R.write_gif(frames, fps=10))
    assert im.n_frames == 3 and im.size == (4, 4)
    im.seek(2)
    assert (np.asarray(im.convert("L")) == 255).all()


def test_gif_written_atomically(tmp_path):
    path = tmp_path / "replay.gif"
    data = R.write_gif(_frames(3), path)
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["replay.gif"]  # no temp file left behind


def test_gif_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "replay.gif"
    path.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        R.write_gif(_frames(2), str(path))
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["replay.gif"]


# --- bad input -------------------------------------------------------------------------

X = np.zeros((4, 4, 2))
BAD = [
    (lambda: R.normalize(X, mode="bogus"), ValueError, r"mode must be one of 'layer'.*'bogus'"),
    (lambda: R.normalize([]), ValueError, r"x must not be empty"),
    (lambda: R.normalize([1.0, np.nan]), ValueError, r"x must be finite"),
    (lambda: R.normalize(["a"]), TypeError, r"x must be a real numeric array"),
    (lambda: R.normalize([1.0, 2.0], "channel"), ValueError, r"x must have >= 2 dims"),
    (lambda: R.normalize([1.0], vmin=2, vmax=1), ValueError, r"vmin must be <= vmax"),
    (lambda: R.normalize([1.0], "none", vmax=1), ValueError, r"vmin/vmax"),
    (lambda: R.normalize([1.0], vmin="low"), TypeError, r"vmin must be a number"),
    (
        lambda: R.colorize([0.5], cmap="jet"),
        ValueError,
        r"cmap must be one of 'gray', 'viridis', 'rwb'",
    ),
    (lambda: R.colorize(np.array([1], np.uint8)), TypeError, r"x01 must be a float array"),
    (lambda: R.to_uint8(np.array([1], np.int32)), TypeError, r"image01 must be a float array"),
    (lambda: R.grid(np.zeros(5)), ValueError, r"tiles must be \(H, W, C\)"),
    (lambda: R.grid(np.zeros((1, 2, 2, 2, 2))), ValueError, r"tiles must be \(H, W, C\)"),
    (lambda: R.grid(np.zeros((2, 4, 4, 5))), ValueError, r"\(N, H, W, 1\) or \(N, H, W, 3\)"),
    (lambda: R.grid(np.zeros((4, 4, 0))), ValueError, r"tiles must not be empty"),
    (lambda: R.grid([]), ValueError, r"tiles must not be empty"),
    (
        lambda: R.grid([np.zeros((2, 2)), np.zeros((3, 3))]),
        ValueError,
        r"tiles must all have one shape",
    ),
    (lambda: R.grid(X, scale=0), ValueError, r"scale must be an integer >= 1; got 0"),
    (lambda: R.grid(X, scale=-2), ValueError, r"scale must be an integer >= 1"),
    (lambda: R.grid(X, scale=1.5), TypeError, r"scale must be an integer"),
    (lambda: R.grid(X, spacing=-1), ValueError, r"spacing must be an integer >= 0"),
    (lambda: R.grid(X, ncols=0), ValueError, r"ncols must be an integer >= 1"),
    (lambda: R.grid(X, normalize="global"), ValueError, r"normalize must be one of .*'channel'"),
    (lambda: R.grid(X, cmap="hot"), ValueError, r"cmap must be one of .*'rwb'"),
    (lambda: R.grid(X, background=300), ValueError, r"background must be an int 0\.\.255"),
    (lambda: R.grid(X, tile_axis=1), ValueError, r"tile_axis must be None, 0 or -1"),
    (lambda: R.grid_shape(0), ValueError, r"n must be an integer >= 1"),
    (lambda: R.upscale(np.zeros((2, 2)), 0), ValueError, r"factor must be an integer >= 1"),
    (lambda: R.upscale(np.zeros((2, 2)), 2.0), TypeError, r"factor must be an integer"),
    (lambda: R.upscale(np.zeros(3), 2), ValueError, r"img must be \(H, W\) or \(H, W, C\)"),
    (lambda: R.overlay(np.zeros((4, 4)), np.zeros((3, 3))), ValueError, r"heat shape \(3, 3\)"),
    (
        lambda: R.overlay(np.zeros((4, 4)), np.zeros((4, 4, 3))),
        ValueError,
        r"heat must be \(H, W\)",
    ),
    (
        lambda: R.overlay(np.zeros((4, 4, 2)), np.zeros((4, 4))),
        ValueError,
        r"image must be \(H, W\)",
    ),
    (
        lambda: R.overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=1.5),
        ValueError,
        r"alpha must be a number in \[0, 1\]",
    ),
    (
        lambda: R.overlay(np.zeros((4, 4)), np.zeros((4, 4)), normalize="x"),
        ValueError,
        r"normalize must be one of",
    ),
    (lambda: R.png_bytes(np.zeros((2, 2, 3))), TypeError, r"img_uint8 must have dtype uint8"),
    (lambda: R.png_bytes(np.zeros((2, 2, 2), np.uint8)), ValueError, r"img_uint8 must be \(H, W\)"),
    (lambda: R.write_gif([]), ValueError, r"frames must not be empty"),
    (lambda: R.write_gif(_frames(), fps=0), ValueError, r"fps must be a positive number"),
    (lambda: R.write_gif(np.zeros((4, 4))), ValueError, r"frames must be \(T, H, W\)"),
    (
        lambda: R.write_gif([np.zeros((2, 2)), np.zeros((3, 3))]),
        ValueError,
        r"frames must all have one shape",
    ),
]


@pytest.mark.parametrize("call, exc, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_names_the_argument(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_public_api_is_reexported():
    assert set(R.__all__) >= {
        "normalize", "colorize", "grid", "grid_shape", "upscale", "overlay",
        "to_uint8", "png_bytes", "write_gif",
    }  # fmt: skip
    for name in R.__all__:
        assert getattr(jv.render, name) is getattr(R, name)
    assert callable(jv.render.grid) and callable(jv.render.normalize)
