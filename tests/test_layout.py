"""jaxvis.layout on its own: layouts from shapes, spatial/prefix views, and the layer rules
(which layers are spatial, which are a ViT's blocks, which one a tool starts on).

Probes here are plain functions with ``jv.tap``; only their shapes are traced.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxvis as jv
from jaxvis.layout import (
    LayerLayout,
    TokenGrid,
    block_layers,
    check_token_layers,
    default_spatial_layer,
    layout_of,
    prefix_view,
    spatial_layers,
    spatial_view,
    unit_layers,
)
from jaxvis.probe import Layer


def test_layout_of_each_kind():
    vit = (224, 224, 3)
    assert layout_of((197, 384), vit).grid == TokenGrid(14, 14, 1)
    assert layout_of((196, 384), vit).grid == TokenGrid(14, 14, 0)
    qkv = layout_of((197, 6, 64), vit)
    assert (qkv.kind, qkv.spatial_shape, qkv.channels) == ("tokens", (14, 14, 384), 384)
    assert layout_of((56, 56, 64), vit).kind == "spatial"
    assert layout_of((1000,), vit).kind == "vector"
    attn = layout_of((6, 197, 197), vit, kind="attention")
    assert (attn.kind, attn.grid, attn.spatial_shape) == ("attention", TokenGrid(14, 14, 1), None)
    assert layout_of((197, 384), vit, token_grid=(7, 28)).grid == TokenGrid(7, 28, 1)
    assert layout_of((17, 32), vit, token_grid=(5, 5)).kind == "other"
    assert layout_of((7, 384), vit).kind == "other"  # 7 tokens are no grid
    wide = layout_of((1 + 8 * 16, 32), (64, 128, 3))  # the grid follows the image's aspect
    assert wide.grid == TokenGrid(8, 16, 1)


def test_views_and_token_index():
    lay = LayerLayout("tokens", (1 + 6, 2, 3), TokenGrid(2, 3, 1))
    acts = np.arange(2 * 7 * 2 * 3).reshape(2, 7, 2, 3)
    view = spatial_view(acts, lay)
    assert view.shape == (2, 2, 3, 6)
    grid = lay.grid
    np.testing.assert_array_equal(view[:, 1, 2], acts[:, grid.token(1, 2)].reshape(2, 6))
    assert grid.token(1, 2) == 1 + 1 * 3 + 2
    np.testing.assert_array_equal(prefix_view(acts, lay), acts[:, :1].reshape(2, 1, 6))
    with pytest.raises(ValueError, match=r"patch \(row, col\) must lie in the 2x3 grid"):
        grid.token(2, 0)
    with pytest.raises(ValueError, match="no spatial"):
        spatial_view(acts, LayerLayout("vector", (5,)))


def tapped_vit(names: dict[str, tuple[int, ...]]) -> jv.Probe:
    """A plain function tapping zeros of the given shapes (batch first), in order."""

    def fn(params, x):  # noqa: ANN001, ANN202
        n = x.shape[0]
        for name, shape in names.items():
            jv.tap(name, jnp.zeros((n, *shape)) + x.mean())
        return jnp.zeros((n, 3))

    return jv.Probe(fn, {}, input_shape=(32, 32, 3))


def test_block_rules_on_a_tapped_vit():
    layers = {"embed": (4, 4, 8)}
    for i in range(3):
        layers |= {f"blocks.{i}.norm": (17, 8), f"blocks.{i}.q": (17, 2, 4), f"blocks.{i}": (17, 8)}
    layers |= {"norm": (17, 8), "head": (3,)}
    probe = tapped_vit(layers)
    assert block_layers(probe) == ["blocks.0", "blocks.1", "blocks.2"]
    assert default_spatial_layer(probe) == "blocks.2"
    assert default_spatial_layer(probe, gradients=True) == "blocks.1"
    assert spatial_layers(probe, tokens=False) == ["embed"]
    assert "head" not in spatial_layers(probe) and "blocks.0.q" in spatial_layers(probe)
    assert unit_layers(probe) == list(layers)  # every one has channels to pick
    odd = tapped_vit({"blk": (17, 8), "seven": (7, 8), "fc": (3,)})
    assert unit_layers(odd) == ["blk", "fc"]


def test_default_layer_without_blocks():
    cnn = tapped_vit({"conv1": (16, 16, 4), "conv2": (8, 8, 8), "fc": (10,)})
    assert block_layers(cnn) == [] and default_spatial_layer(cnn) == "conv2"
    one_block = tapped_vit({"embed": (4, 4, 8), "block": (16, 8), "fc": (10,)})
    assert default_spatial_layer(one_block, gradients=True) == "block"  # tokens over maps
    assert default_spatial_layer(tapped_vit({"fc": (10,)})) is None


def test_token_grid_that_fits_no_layer():
    layers = [Layer("blk", "tap", (17, 8), "float32", 0), Layer("fc", "tap", (3,), "float32", 0)]
    check_token_layers(layers, (32, 32, 3), None)
    check_token_layers(layers, (32, 32, 3), (4, 4))
    with pytest.raises(ValueError, match=r"token_grid=\(5, 5\).*\[17\].*token_grid=\(4, 4\)"):
        check_token_layers(layers, (32, 32, 3), (5, 5))
    cnn = [Layer("conv", "tap", (8, 8, 4), "float32", 0)]
    with pytest.raises(ValueError, match="no \\(T, D\\) or \\(T, heads, d\\) token layers"):
        check_token_layers(cnn, (32, 32, 3), (4, 4))
    attn = [Layer("attn", "attention", (2, 17, 17), "float32", 0)]
    with pytest.raises(ValueError, match="token_grid"):  # attention alone without a fitting grid
        check_token_layers(attn, (32, 32, 3), (5, 5))
