"""Tokens are images: every tool on a small Linen ViT (class token, MultiHeadDotProductAttention).

The ViT is written here in the style of google-research/vision_transformer (patch-embedding
Conv ``embedding``, a ``cls`` parameter, ``Transformer.encoderblock_{i}``, ``encoder_norm``, a
zero-initialised ``head`` that is re-drawn). 32x32 inputs, 8x8 patches: a 4x4 grid plus the
class token (T = 17), width 32, 2 heads of 16, 2 blocks. An independent plain-``jnp`` forward
pass of the same parameters is the reference for activations and Grad-CAM.
"""

from __future__ import annotations

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from PIL import Image

import jaxvis as jv
from jaxvis.layout import block_layers, default_spatial_layer, spatial_layers
from jaxvis.optvis import objectives as O
from jaxvis.widgets import LayerExplorer
from jaxvis.widgets._common import fmt
from jaxvis.widgets.channel_grid import MIN_PNG_PX, tile_scale
from jaxvis.widgets.layer_explorer import class_token, layer_tiles

GRID, PATCH, WIDTH, HEADS, MLP, DEPTH, CLASSES = 4, 8, 32, 2, 64, 2, 5
SIZE = GRID * PATCH
T = 1 + GRID * GRID


# --------------------------------------------------------------------------- the model


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.gelu(nn.Dense(self.mlp_dim)(x))
        return nn.Dense(x.shape[-1])(y)


class Encoder1DBlock(nn.Module):
    mlp_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(y, y)
        x = x + y
        y = MlpBlock(self.mlp_dim)(nn.LayerNorm()(x))
        return x + y


class Encoder(nn.Module):
    num_layers: int
    mlp_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]))
        x = x + pos
        for i in range(self.num_layers):
            x = Encoder1DBlock(self.mlp_dim, self.num_heads, name=f"encoderblock_{i}")(x)
        return nn.LayerNorm(name="encoder_norm")(x)


class ViT(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(WIDTH, (PATCH, PATCH), (PATCH, PATCH), "VALID", name="embedding")(x)
        n, h, w, c = x.shape
        x = x.reshape(n, h * w, c)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
        x = Encoder(DEPTH, MLP, HEADS, name="Transformer")(x)
        return nn.Dense(CLASSES, name="head", kernel_init=nn.initializers.zeros)(x[:, 0])


@functools.cache
def vit_variables() -> dict:
    variables = ViT().init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    rng = np.random.default_rng(1)  # the zero-initialised head and class token, re-drawn
    params["head"]["kernel"] = rng.normal(0, 0.5, params["head"]["kernel"].shape)
    params["cls"] = rng.normal(0, 0.5, params["cls"].shape)
    return {"params": jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)}


@pytest.fixture(scope="module")
def probe() -> jv.Probe:
    return jv.Probe(ViT(), vit_variables(), input_shape=(SIZE, SIZE, 3), class_names="abcde")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((6, SIZE, SIZE, 3)).astype(np.float32)


# --------------------------------------------------------------------------- plain forward


def _layer_norm(p: dict, x: jax.Array) -> jax.Array:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def _block(p: dict, x: jax.Array) -> jax.Array:
    a = p["MultiHeadDotProductAttention_0"]
    y = _layer_norm(p["LayerNorm_0"], x)
    q, k, v = (
        jnp.einsum("ntc,chd->nthd", y, a[n]["kernel"]) + a[n]["bias"]
        for n in ("query", "key", "value")
    )
    logits = jnp.einsum("nqhd,nkhd->nhqk", q / jnp.sqrt(q.shape[-1]), k)
    mixed = jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(logits, -1), v)
    x = x + jnp.einsum("nthd,hdc->ntc", mixed, a["out"]["kernel"]) + a["out"]["bias"]
    m = p["MlpBlock_0"]
    y = _layer_norm(p["LayerNorm_1"], x)
    y = jax.nn.gelu(y @ m["Dense_0"]["kernel"] + m["Dense_0"]["bias"])
    return x + y @ m["Dense_1"]["kernel"] + m["Dense_1"]["bias"]


def plain_tokens(params: dict, x: jax.Array, upto: int) -> jax.Array:
    """The output of block ``upto`` (-1: the tokens entering block 0), by hand."""
    n = x.shape[0]
    patches = x.reshape(n, GRID, PATCH, GRID, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    e = params["embedding"]
    tokens = patches.reshape(n, GRID * GRID, -1) @ e["kernel"].reshape(-1, WIDTH) + e["bias"]
    tokens = jnp.concatenate([jnp.tile(params["cls"], (n, 1, 1)), tokens], axis=1)
    tokens = tokens + params["Transformer"]["pos_embedding"]
    for i in range(upto + 1):
        tokens = _block(params["Transformer"][f"encoderblock_{i}"], tokens)
    return tokens


def plain_head(params: dict, tokens: jax.Array, after: int) -> jax.Array:
    """Logits from the output tokens of block ``after``, by hand."""
    for i in range(after + 1, DEPTH):
        tokens = _block(params["Transformer"][f"encoderblock_{i}"], tokens)
    tokens = _layer_norm(params["Transformer"]["encoder_norm"], tokens)
    return tokens[:, 0] @ params["head"]["kernel"] + params["head"]["bias"]


# --------------------------------------------------------------------------- layouts


def test_layouts_of_the_vit_layers(probe, images):
    grid = jv.layout.TokenGrid(GRID, GRID, 1)
    block = probe.layout("Transformer.encoderblock_1")
    assert (block.kind, block.grid, block.spatial_shape) == ("tokens", grid, (4, 4, WIDTH))
    qkv = probe.layout("Transformer.encoderblock_0.MultiHeadDotProductAttention_0.value")
    assert (qkv.kind, qkv.shape, qkv.grid) == ("tokens", (T, HEADS, WIDTH // HEADS), grid)
    assert qkv.spatial_shape == (4, 4, WIDTH) and qkv.channels == WIDTH
    assert probe.layout("embedding").kind == "spatial"
    assert (probe.layout("head").kind, probe.layout("head").channels) == ("vector", CLASSES)
    assert block_layers(probe) == ["Transformer.encoderblock_0", "Transformer.encoderblock_1"]
    assert default_spatial_layer(probe) == "Transformer.encoderblock_1"
    assert default_spatial_layer(probe, gradients=True) == "Transformer.encoderblock_0"
    assert spatial_layers(probe, tokens=False) == ["embedding"]
    assert spatial_layers(probe) == [
        lay.name for lay in probe.layers if lay.name != "head" and lay.kind != "attention"
    ]
    # the probe's activations are the hand-written forward pass's
    acts = probe.activations(images, ["Transformer.encoderblock_1"])
    want = plain_tokens(vit_variables()["params"], jnp.asarray(images), 1)
    np.testing.assert_allclose(acts["Transformer.encoderblock_1"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        probe(images), plain_head(vit_variables()["params"], want, 1), rtol=1e-4, atol=1e-4
    )


def test_token_grid_that_fits_no_layer_is_refused():
    bad = jv.Probe(ViT(), vit_variables(), input_shape=(SIZE, SIZE, 3), token_grid=(5, 5))
    with pytest.raises(ValueError, match=r"token_grid=\(5, 5\).*25 tokens.*\[17\].*\(4, 4\)"):
        _ = bad.layers
    with pytest.raises(ValueError, match="token_grid"):
        _ = bad.layers  # still refused when asked again
    ok = jv.Probe(ViT(), vit_variables(), input_shape=(SIZE, SIZE, 3), token_grid=(4, 4))
    assert ok.layout("Transformer.encoderblock_0").grid == jv.layout.TokenGrid(4, 4, 1)


# --------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_on_tokens_equals_a_hand_computed_one(probe, images):
    params = vit_variables()["params"]
    x = jnp.asarray(images)
    target = np.asarray(jnp.argmax(probe(images), -1))
    cam = jv.attribution.grad_cam(probe, images)
    assert cam.settings["layer"] == "Transformer.encoderblock_0"

    def score(tokens: jax.Array, after: int) -> jax.Array:
        logits = plain_head(params, tokens, after)
        return jnp.take_along_axis(logits, jnp.asarray(target)[:, None], 1).sum()

    for after in (0, 1):
        tokens = plain_tokens(params, x, after)
        grads = jax.grad(score)(tokens, after)
        g = np.asarray(grads[:, 1:]).reshape(len(x), GRID, GRID, WIDTH)  # class token left out
        a = np.asarray(tokens[:, 1:]).reshape(len(x), GRID, GRID, WIDTH)
        want = np.maximum((g.mean(axis=(1, 2), keepdims=True) * a).sum(-1), 0.0)
        if after == 1:  # the last block's patch tokens never reach the class-token head
            assert not np.any(g)
            continue
        assert want.max() > 0
        np.testing.assert_allclose(cam.extra["layer_map"], want, rtol=1e-3, atol=1e-5)
        up = jax.image.resize(want, (len(x), SIZE, SIZE), "bilinear")
        np.testing.assert_allclose(cam.values[..., 0], up, rtol=1e-3, atol=1e-5)
    # q/k/v (T, heads, d) tokens have a grid view too; attention-free vectors are refused
    qkv = jv.attribution.grad_cam(
        probe, images[:2], layer="Transformer.encoderblock_1.MultiHeadDotProductAttention_0.value"
    )
    assert qkv.extra["layer_map"].shape == (2, GRID, GRID) and qkv.values.shape == (2, 32, 32, 1)
    with pytest.raises(ValueError, match="'head'.*grad_cam needs"):
        jv.attribution.grad_cam(probe, images[:2], layer="head")


# --------------------------------------------------------------------------- objectives


def test_objectives_read_token_layers_on_the_patch_grid(probe, images):
    block = "Transformer.encoderblock_1"
    value = "Transformer.encoderblock_0.MultiHeadDotProductAttention_0.value"
    acts = probe.activations(images, [block, value])
    a, v = np.asarray(acts[block]), np.asarray(acts[value])
    obj = O.channel(block, 3).bind(probe)
    np.testing.assert_allclose(obj(acts), a[:, 1:, 3].mean(1), rtol=1e-5)  # patch tokens only
    obj = O.neuron(block, 5, y=1, x=2).bind(probe)
    np.testing.assert_allclose(obj(acts), a[:, 1 + 1 * GRID + 2, 5], rtol=1e-6)
    centre = O.neuron(block, 5).bind(probe)  # the centre of the 4x4 grid: patch (2, 2)
    np.testing.assert_allclose(centre(acts), a[:, 1 + 2 * GRID + 2, 5], rtol=1e-6)
    # (T, heads, d): channel 20 = head 1, dim 4
    obj = O.channel(value, 20).bind(probe)
    np.testing.assert_allclose(obj(acts), v[:, 1:, 1, 4].mean(1), rtol=1e-5)
    with pytest.raises(ValueError, match="channel 32 is out of range"):
        O.channel(block, 32).bind(probe)
    with pytest.raises(ValueError, match="neuron y=4 is out of range"):
        O.neuron(block, 0, y=4, x=0).bind(probe)


# --------------------------------------------------------------------------- top-k


def _brute_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(C, k)`` values and indices of the ``(N, C)`` scores, ties to the lower index."""
    order = np.argsort(-scores, axis=0, kind="stable")[:k].T
    return np.take_along_axis(scores.T, order, 1), order


def test_top_k_on_tokens_matches_brute_force(probe):
    data = np.random.default_rng(3).random((21, SIZE, SIZE, 3)).astype(np.float32)
    layer = "Transformer.encoderblock_1"
    acts = np.asarray(probe.activations(data, layer)[layer])
    grid = acts[:, 1:].reshape(len(data), GRID, GRID, WIDTH)
    flat = grid.reshape(len(data), -1, WIDTH)
    res = jv.dataset.top_k(probe, data, layer, k=4, batch_size=8, progress=False)
    values, indices = _brute_top_k(flat.max(1), 4)
    np.testing.assert_array_equal(res.indices, indices)
    np.testing.assert_allclose(res.values, values, rtol=1e-5)
    where = flat.argmax(1)  # (N, C) first maximum, row-major over the grid
    best = np.take_along_axis(where.T, indices, 1)
    np.testing.assert_array_equal(res.positions, np.stack([best // GRID, best % GRID], -1))
    assert res.position == "patches" and res.n_channels == WIDTH
    cls = jv.dataset.top_k(probe, data, layer, k=4, position="cls", progress=False)
    values, indices = _brute_top_k(acts[:, 0], 4)
    np.testing.assert_array_equal(cls.indices, indices)
    np.testing.assert_allclose(cls.values, values, rtol=1e-5)
    assert cls.positions is None and cls.position == "cls"
    mean = jv.dataset.top_k(probe, data, layer, k=3, reduce="mean", progress=False)
    np.testing.assert_array_equal(mean.indices, _brute_top_k(flat.mean(1), 3)[1])
    with pytest.raises(ValueError, match="position must be one of"):
        jv.dataset.top_k(probe, data, layer, position="token", progress=False)
    with pytest.raises(ValueError, match="position='cls' needs a token layer"):
        jv.dataset.top_k(probe, data, "embedding", position="cls", progress=False)


# --------------------------------------------------------------------------- widgets


def test_layer_explorer_draws_tokens_as_patch_maps(probe, images):
    block = "Transformer.encoderblock_1"
    ex = LayerExplorer(probe, images[:3])
    assert not ex.error.error
    geom = ex.grids.geometry_of(block)
    side = GRID * tile_scale(GRID, GRID, MIN_PNG_PX)
    assert geom["n_tiles"] == WIDTH and (geom["tile_h"], geom["tile_w"]) == (side, side)
    png = np.asarray(Image.open(io.BytesIO(ex.grids.png(block))))
    assert png.shape[:2] == (geom["img_height"], geom["img_width"])
    qkv = ex.grids.geometry_of("Transformer.encoderblock_0.MultiHeadDotProductAttention_0.query")
    assert qkv["n_tiles"] == WIDTH and qkv["tile_h"] == side  # heads * d maps of 4x4
    assert "4×4 patches + 1 class token" in ex.grids.titles[ex.grids.index(block)]
    cls = np.asarray(probe.activations(images[:1], block)[block])[0, 0]
    label = ex.grids.labels_of(block)[7]
    assert label.startswith("ch 7: [") and label.endswith(f"cls {fmt(cls[7])}")
    ex.select(block, 7)
    assert ex.channel_slider.max == WIDTH - 1 and "class token" in ex.enlarged_info.value
    assert ex.grids.geometry_of("head")["n_tiles"] == CLASSES  # vectors as before


def test_layer_tiles_of_tokens_and_attention():
    lay = jv.layout.LayerLayout("tokens", (1 + 6, 2, 3), jv.layout.TokenGrid(2, 3, 1))
    act = np.arange(7 * 2 * 3.0).reshape(7, 2, 3)
    tiles, dense = layer_tiles(act, lay)  # one 2x3 patch map per channel (heads * d = 6)
    assert tiles.shape == (6, 2, 3) and not dense
    np.testing.assert_array_equal(tiles[4], act[1:, 1, 1].reshape(2, 3))
    np.testing.assert_array_equal(class_token(act, lay), act[0].reshape(6))
    attn = jv.layout.LayerLayout("attention", (2, 7, 7), lay.grid)
    tiles, dense = layer_tiles(np.ones((2, 7, 7)), attn)  # one (T, T) map per head
    assert tiles.shape == (2, 7, 7) and not dense and class_token(tiles, attn) is None


def _no_layer_probe() -> jv.Probe:
    def fn(params, x):  # noqa: ANN001, ANN202 - a plain function without jv.tap
        return x.mean(axis=(1, 2)) @ params["w"]

    return jv.Probe(fn, {"w": jnp.ones((3, 4))}, input_shape=(SIZE, SIZE, 3))


def test_widgets_without_layers_or_weights_say_so(images):
    empty = _no_layer_probe()
    assert empty.layers == ()
    ex = LayerExplorer(empty, images[:2])
    assert "no layers" in ex.message.value and not ex.error.error
    assert ex.grids.names == [] and ex.layer_select.disabled and ex.probs is not None
    ex.slider.value = 1  # still usable
    assert not ex.error.error and "image 1" in ex.caption.value
    wh = jv.widgets.WeightHistograms(empty)
    assert "No weights" in wh.stats.value and wh.layer_select.disabled and not wh.error.error
    fg = jv.widgets.FilterGrid(empty)
    assert "no convolution layers" in fg.caption.value and not fg.error.error
    fv = jv.widgets.FeatureVis(empty, steps=8, preview_every=8)
    assert "no layers" in fv.status.value and fv.target.value == "class" and fv.target.disabled
    fv.run(wait=True)  # its classes can still be visualised
    assert not fv.error.error and fv.result.images.shape == (1, SIZE, SIZE, 3)


def test_feature_vis_and_unit_explorer_accept_token_layers(probe, images):
    block = "Transformer.encoderblock_1"
    fv = jv.widgets.FeatureVis(probe, layer=block, channel=4, steps=8, preview_every=8)
    names = list(fv.layer_select.options)
    assert fv.layer_select.value == block and fv.channel_slider.max == WIDTH - 1
    assert "Transformer.encoderblock_0.MultiHeadDotProductAttention_0.key" in names
    assert jv.widgets.FeatureVis(probe).layer_select.value == block  # the default
    fv.target.value = "neuron"
    assert fv.objective().bind(probe).view == probe.layout(block)
    fv.run(wait=True)
    assert not fv.error.error and fv.result.images.shape == (1, SIZE, SIZE, 3)
    ue = jv.widgets.UnitExplorer(probe, images, layer=block, channel=2, k=3, fv_steps=0)
    assert not ue.error.error and ue.channel_slider.max == WIDTH - 1
    res = ue.top_k(block)
    assert res.position == "patches" and res.positions.max() < GRID
    a = np.asarray(probe.activations(images[:1], block)[block])[0, 1:, 2].reshape(GRID, GRID)
    r, c = np.unravel_index(int(a.argmax()), a.shape)
    assert f"max {fmt(a.max())} at ({r}, {c})" in ue.act_caption.value
    cls = np.asarray(probe.activations(images[:1], block)[block])[0, 0, 2]
    assert f"class token {fmt(cls)}" in ue.act_caption.value
    assert ue.top_image.value  # the top images are drawn whatever the receptive field says
