"""Tokens are images: every tool on a small Linen ViT (class token, MultiHeadDotProductAttention).

The ViT is written here in the style of google-research/vision_transformer (patch-embedding
Conv ``embedding``, a ``cls`` parameter, ``Transformer.encoderblock_{i}``, ``encoder_norm``, a
zero-initialised ``head`` that is re-drawn). 32x32 inputs, 8x8 patches: a 4x4 grid plus the
class token (T = 17), width 32, 2 heads of 16, 2 blocks. An independent plain-``jnp`` forward
pass of the same parameters is the reference for activations and Grad-CAM.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import jaxvis as jv
from jaxvis.layout import block_layers, default_spatial_layer, spatial_layers

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
    assert spatial_layers(probe) == [lay.name for lay in probe.layers if lay.name != "head"]
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
