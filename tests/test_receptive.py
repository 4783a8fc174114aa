"""Receptive fields for any graph, against brute-force gradient supports computed here.

The models are written as real code bases write them: a Linen ResNet in the style of the Flax
ImageNet example (7x7/2 stem, BatchNorm, functional ``nn.max_pool``, projection shortcuts
``conv_proj``, zero-initialised last BatchNorm scale per block), a plain function with
``jv.tap``, dilated and strided Linen convolutions, and a Linen ViT in the style of
google-research/vision_transformer. The references are independent of jaxvis's analysis: the
nonzero pattern of ``jax.jacrev`` of a hand-written forward pass with the same connectivity
and all-positive linear parts (ones for kernels, sums for max pools, identity for ReLUs: no
cancellation, no dead zones), or of the real model where it has no zero derivatives (the ViT).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

import jaxvis as jv
from jaxvis.dataset import input_support, receptive_field

DN = ("NHWC", "HWIO", "NHWC")


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def jacobian_support(forward: Callable, x: jax.Array) -> np.ndarray:
    """``(h, w, H, W)``: which pixels each unit of ``forward(x)`` (1, h, w, C) depends on."""
    jac = jax.jacrev(lambda x: forward(x)[0].sum(-1))(x)  # (h, w, 1, H, W, C)
    return np.asarray(jac != 0).any(axis=(2, 5))


def check_against(probe, layer: str, support: np.ndarray, method: str = "auto"):
    """The field's boxes equal the reference supports' boxes, for every unit; masks agree."""
    rf = receptive_field(probe, layer, method=method)
    h, w = support.shape[:2]
    height, width = support.shape[2:]
    for i in range(h):
        for j in range(w):
            box, tight = rf.box(i, j), bbox(support[i, j])
            if rf.window(i, j) == box:  # inside the image: the support's bounding box
                assert box == tight, (layer, method, i, j)
            else:  # the support fills the box up to where it meets the image border
                assert box[:2] == tight[:2] or 0 in box[:2], (layer, method, i, j)
                assert all(b >= t for b, t in zip(box[2:], tight[2:], strict=True))
                assert box[2:] == tight[2:] or height in box[2:] or width in box[2:]
                assert all(b <= t for b, t in zip(box[:2], tight[:2], strict=True))
    units = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
    got = input_support(probe, layer, units)
    for (i, j), mask in zip(units, got, strict=True):
        np.testing.assert_array_equal(mask, support[i, j], err_msg=f"{layer} {(i, j)}")
    return rf


def ones_conv(x, k, stride=1, padding="SAME", dilation=1, c_out=2):
    w = jnp.ones((k, k, x.shape[-1], c_out), x.dtype)
    return lax.conv_general_dilated(
        x, w, (stride, stride), padding, rhs_dilation=(dilation, dilation), dimension_numbers=DN
    )


# ---------------------------------------------------------------- Flax ImageNet-style ResNet

ModuleDef = Any


class ResNetBlock(nn.Module):
    """As in flax/examples/imagenet/models.py."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (3, 3), self.strides)(x)
        y = self.norm()(y)
        y = self.act(y)
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm(scale_init=nn.initializers.zeros_init())(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    stage_sizes: Sequence[int]
    num_filters: int = 4
    num_classes: int = 5

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = partial(nn.Conv, use_bias=False)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
        x = norm(name="bn_init")(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = ResNetBlock(
                    self.num_filters * 2**i, conv=conv, norm=norm, act=nn.relu, strides=strides
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def resnet_structure(x):
    """The ResNet's connectivity with positive linear parts: every path counts, none cancels."""
    out = {}
    x = ones_conv(x, 7, 2, [(3, 3), (3, 3)])
    out["bn_init"] = x
    x = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    for name, stride in (("ResNetBlock_0", 1), ("ResNetBlock_1", 2), ("ResNetBlock_2", 2)):
        y = ones_conv(ones_conv(x, 3, stride), 3)
        out[f"{name}.Conv_0"] = ones_conv(x, 3, stride)
        x = y + (ones_conv(x, 1, stride) if stride > 1 else x)
        out[name] = x
    return out


@pytest.fixture(scope="module")
def resnet():
    model = ResNet(stage_sizes=(1, 1, 1))
    variables = model.init(jax.random.key(0), jnp.zeros((1, 40, 40, 3)), train=False)
    return jv.Probe(model, variables, input_shape=(40, 40, 3), call_kwargs={"train": False})


@pytest.mark.parametrize(
    "layer", ["bn_init", "ResNetBlock_0.Conv_0", "ResNetBlock_0", "ResNetBlock_1", "ResNetBlock_2"]
)
def test_resnet_fields_equal_the_brute_force_support(resnet, layer):
    x = jnp.ones((1, 40, 40, 3))
    support = jacobian_support(lambda x: resnet_structure(x)[layer], x)
    rf = check_against(resnet, layer, support)
    if "." not in layer and layer != "bn_init":  # residual joins: the exact method
        assert rf.method == "gradient" and rf.equivariant, rf.note
    else:  # a chain, functional max pool included: the fast path
        assert rf.method == "settings"
    if layer == "ResNetBlock_1":  # stem 7/2, pool 3/2, 3x3 convs: main path, not conv_proj
        assert (rf.size, rf.stride) == ((51, 51), (8, 8))


def test_resnet_settings_path_names_the_residual_join(resnet):
    rf = receptive_field(resnet, "ResNetBlock_0.Conv_0", method="settings")  # a chain so far
    assert rf.method == "settings" and rf.size == (19, 19)
    with pytest.raises(ValueError, match="joins values that see different windows.*gradient"):
        receptive_field(resnet, "ResNetBlock_1", method="settings")


def test_resnet_field_does_not_depend_on_weights(resnet):
    """The zero-initialised BatchNorm scale makes the real model's numeric gradient see only
    the shortcut, and max pooling hides all but one pixel per window even with positive
    weights: the receptive field is the architecture's and contains every numeric support."""
    layer, unit = "ResNetBlock_1", (2, 2)
    rf = receptive_field(resnet, layer)
    support = input_support(resnet, layer, [unit])[0]
    assert bbox(support) == rf.box(*unit)

    @jax.jit
    def numeric(x, variables):
        def unit_value(x):
            return resnet.apply(variables, x, [layer])[1][layer][0, unit[0], unit[1]].sum()

        return (jax.grad(unit_value)(x) != 0).any((0, 3))

    x = jax.random.uniform(jax.random.key(1), (1, 40, 40, 3))
    at_init = np.asarray(numeric(x, resnet.params))
    assert not (at_init & ~support).any() and at_init.sum() < 0.5 * support.sum()
    redrawn = jax.tree.map(
        lambda v: jax.random.uniform(jax.random.key(2), v.shape, v.dtype, 0.5, 1.5), resnet.params
    )
    positive = np.asarray(numeric(x, redrawn))
    assert not (positive & ~support).any() and positive.sum() > 0.9 * support.sum()


# ---------------------------------------------------------------- a tapped plain function


def tapped(params, x):
    h = lax.conv_general_dilated(x, params["w"], (1, 1), "SAME", dimension_numbers=DN)
    h = jv.tap("conv", h)
    h = jv.tap("relu", jax.nn.relu(h))
    pooled = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = jv.tap("pool", pooled)
    return h.mean((1, 2)) @ params["d"]


@pytest.mark.parametrize("method", ["settings", "gradient"])
def test_tapped_same_conv_is_three_by_three(method):
    params = {"w": jnp.ones((3, 3, 1, 2)) * 0.1, "d": jnp.ones((2, 3))}
    probe = jv.Probe(tapped, params, input_shape=(12, 12, 1))
    x = jnp.ones((1, 12, 12, 1))
    support = jacobian_support(lambda x: ones_conv(x, 3), x)
    for layer in ("conv", "relu"):
        rf = check_against(probe, layer, support, method)
        assert (rf.size, rf.stride, rf.start) == ((3, 3), (1, 1), (-1, -1))
    pool = jacobian_support(
        lambda x: lax.reduce_window(
            ones_conv(x, 3), 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
        ),
        x,
    )
    rf = check_against(probe, "pool", pool, method)
    assert (rf.size, rf.stride, rf.start) == ((4, 4), (2, 2), (-1, -1))


# ---------------------------------------------------------------- dilation, strides, VALID


class Dilated(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(2, (3, 3), kernel_dilation=2, name="dil")(x))
        x = nn.Conv(2, (3, 3), strides=2, padding="VALID", name="valid2")(x)
        x = nn.avg_pool(x, (2, 2), strides=(1, 1), padding="SAME")
        x = nn.Conv(2, (3, 3), kernel_dilation=3, strides=2, padding=((2, 1), (0, 3)), name="mix")(
            x
        )
        return x


def dilated_structure(x):
    out = {"dil": ones_conv(x, 3, dilation=2)}
    out["valid2"] = ones_conv(out["dil"], 3, 2, "VALID")
    pooled = lax.reduce_window(out["valid2"], 0.0, lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "SAME")
    out["mix"] = ones_conv(pooled, 3, 2, ((2, 1), (0, 3)), dilation=3)
    return out


@pytest.mark.parametrize("layer", ["dil", "valid2", "mix"])
def test_dilated_strided_valid_fields_agree_with_each_other_and_the_support(layer):
    model = Dilated()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 29, 29, 1)))
    probe = jv.Probe(model, variables, input_shape=(29, 29, 1))
    support = jacobian_support(lambda x: dilated_structure(x)[layer], jnp.ones((1, 29, 29, 1)))
    fast = check_against(probe, layer, support, "settings")
    exact = check_against(probe, layer, support, "gradient")
    assert (fast.size, fast.stride, fast.start) == (exact.size, exact.stride, exact.start)
    assert exact.equivariant, exact.note
    if layer == "dil":  # a dilated kernel: a 5x5 window, every other pixel
        assert fast.size == (5, 5) and support[7, 7].sum() == 9


@pytest.mark.parametrize("name", ["mnist_cnn", "shapes_cnn"])
def test_settings_and_gradient_agree_on_the_zoo_models(name):
    probe = jv.zoo.load(name).probe
    for layer in ("conv2", "pool1", "conv4", "pool2"):
        fast = receptive_field(probe, layer)
        exact = receptive_field(probe, layer, method="gradient")
        assert fast.method == "settings" and exact.method == "gradient"
        assert (fast.size, fast.stride, fast.start) == (exact.size, exact.stride, exact.start)


# ---------------------------------------------------------------- a Linen ViT


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.gelu(nn.Dense(self.mlp_dim)(x))
        return nn.Dense(x.shape[-1])(y)


class Encoder1DBlock(nn.Module):
    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, inputs):
        x = nn.LayerNorm()(inputs)
        x = nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(x, x)
        x = x + inputs
        y = MlpBlock(self.mlp_dim)(nn.LayerNorm()(x))
        return x + y


class AddPositionEmbs(nn.Module):
    @nn.compact
    def __call__(self, x):
        pe = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]))
        return x + pe


class ViT(nn.Module):
    patch: int = 4
    hidden: int = 8

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.hidden, (self.patch,) * 2, strides=self.patch, padding="VALID",
                    name="embedding")(x)  # fmt: skip
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))
        cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
        x = AddPositionEmbs(name="posembed_input")(x)
        x = Encoder1DBlock(num_heads=2, mlp_dim=16, name="encoderblock_0")(x)
        x = nn.LayerNorm(name="encoder_norm")(x)
        return nn.Dense(3, name="head")(x[:, 0])


@pytest.fixture(scope="module")
def vit():
    model = ViT()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return jv.Probe(model, variables, input_shape=(16, 16, 3))


def token_support(probe, layer: str) -> np.ndarray:
    """``(T, H, W)`` from the real model's Jacobian (softmax and GELU have no zero slopes)."""

    def tokens(x):  # a random direction per token: a plain sum cancels after a LayerNorm
        out = probe.apply(probe.params, x, [layer])[1][layer][0]
        out = out.reshape(out.shape[0], -1)
        return out @ jax.random.normal(jax.random.key(4), out.shape[1:])

    x = jax.random.uniform(jax.random.key(3), (1, 16, 16, 3))
    return np.asarray(jax.jit(jax.jacrev(tokens))(x) != 0).any(axis=(1, 4))


def test_vit_patch_embedding_and_tokens_before_attention_see_their_patch(vit):
    rf = receptive_field(vit, "embedding")  # spatial (4, 4, 8): the fast path
    assert (rf.size, rf.stride, rf.start, rf.method) == ((4, 4), (4, 4), (0, 0), "settings")
    for layer in ("posembed_input", "encoderblock_0.LayerNorm_0"):
        assert vit.layout(layer).kind == "tokens"
        rf = receptive_field(vit, layer)
        assert (rf.size, rf.stride, rf.start, rf.is_global) == ((4, 4), (4, 4), (0, 0), False)
        support = token_support(vit, layer)
        for r in range(4):
            for c in range(4):
                assert rf.box(r, c) == bbox(support[1 + 4 * r + c]), (layer, r, c)
        assert rf.prefix_boxes == (None,) and not support[0].any()  # the class token


@pytest.mark.parametrize(
    "layer",
    ["encoderblock_0.MultiHeadDotProductAttention_0", "encoderblock_0", "encoder_norm"],
)
def test_vit_tokens_after_attention_see_the_whole_image(vit, layer):
    rf = receptive_field(vit, layer)
    support = token_support(vit, layer)
    assert support.all()
    assert rf.is_global and rf.size == (16, 16) and rf.stride == (0, 0)
    assert rf.box(3, 1) == (0, 0, 16, 16) and rf.prefix_boxes == ((0, 0, 16, 16),)
    np.testing.assert_array_equal(input_support(vit, layer, [0, (1, 2)]), support[[0, 7]])


# ---------------------------------------------------------------- errors


def test_errors_name_the_argument(vit, resnet):
    with pytest.raises(ValueError, match="method must be one of"):
        receptive_field(vit, "embedding", method="fast")
    with pytest.raises(ValueError, match="settings of the layers.*token layer"):
        receptive_field(vit, "encoderblock_0", method="settings")
    with pytest.raises(ValueError, match="without spatial axes"):
        receptive_field(vit, "head")
    with pytest.raises(ValueError, match="unit \\(row, col\\) must lie in the 4x4 grid"):
        receptive_field(vit, "posembed_input").box(4, 0)
    with pytest.raises(ValueError, match="units\\[1\\] = \\(10, 0\\) is outside"):
        input_support(resnet, "ResNetBlock_0", [(0, 0), (10, 0)])
    with pytest.raises(TypeError, match="units\\[0\\] must be a pair \\(row, col\\)"):
        input_support(resnet, "ResNetBlock_0", ["a"])
    with pytest.raises(ValueError, match="units\\[0\\] = 3: a single index is a token"):
        input_support(resnet, "ResNetBlock_0", [3])
    with pytest.raises(TypeError, match="probe must be a jaxvis.Probe"):
        receptive_field(object(), "conv")


# ---------------------------------------------------------------- loops over blocks


def scanned(params, x):
    """Blocks stacked along a leading axis and run with lax.scan (the nnx.scan idiom)."""
    h = lax.conv_general_dilated(x, params["w0"], (1, 1), "SAME", dimension_numbers=DN)

    def block(h, w):
        y = lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=DN)
        return h + jax.nn.relu(y), None

    h, _ = lax.scan(block, h, params["ws"])
    return jv.tap("blocks", h).mean((1, 2))


def test_blocks_run_with_scan_are_followed():
    params = {"w0": jnp.ones((3, 3, 1, 2)), "ws": jnp.ones((3, 3, 3, 2, 2))}
    probe = jv.Probe(scanned, params, input_shape=(20, 20, 1))
    with pytest.raises(ValueError, match="'scan'"):
        receptive_field(probe, "blocks", method="settings")
    structure = jacobian_support(
        lambda x: ones_conv(ones_conv(ones_conv(ones_conv(x, 3), 3), 3), 3),
        jnp.ones((1, 20, 20, 1)),
    )
    rf = check_against(probe, "blocks", structure)
    assert (rf.size, rf.stride, rf.start, rf.method) == ((9, 9), (1, 1), (-4, -4), "gradient")


def wide(params, x):
    h = lax.conv_general_dilated(x, params["w"], (4, 4), "SAME", dimension_numbers=DN)
    return jv.tap("wide", h).mean((1, 2))


def test_a_field_wider_than_the_image_is_read_on_a_larger_one_and_checked():
    """41x41/4 on 24x24: one unit's window starts inside the image, one ends inside it, too
    few to tell size, stride and start; they are read on a larger image and checked here."""
    probe = jv.Probe(wide, {"w": jnp.ones((41, 41, 1, 1))}, input_shape=(24, 24, 1))
    x = jnp.ones((1, 24, 24, 1))
    support = jacobian_support(lambda x: ones_conv(x, 41, 4, c_out=1), x)
    rf = check_against(probe, "wide", support, "gradient")
    assert (rf.size, rf.stride, rf.start) == ((41, 41), (4, 4), (-18, -18))
    assert rf.equivariant and "read on a 48x48 image" in rf.note
    fast = receptive_field(probe, "wide", method="settings")
    assert (fast.size, fast.stride, fast.start) == (rf.size, rf.stride, rf.start)


def branchy(params, x):
    """A cond whose branches see different windows: the field is their union."""
    h = lax.cond(
        params["wide"] > 0,
        lambda x: lax.conv_general_dilated(x, params["w5"], (1, 1), "SAME", dimension_numbers=DN),
        lambda x: lax.conv_general_dilated(x, params["w3"], (1, 1), "SAME", dimension_numbers=DN),
        x,
    )
    h = jv.tap("branch", h)
    h = lax.while_loop(lambda c: c[1] < 2, lambda c: (c[0] * 2.0, c[1] + 1), (h, 0))[0]
    return jv.tap("loop", h).mean((1, 2))


def test_cond_takes_the_union_and_while_is_refused_by_name():
    params = {"wide": jnp.array(-1.0), "w5": jnp.ones((5, 5, 1, 1)), "w3": jnp.ones((3, 3, 1, 1))}
    probe = jv.Probe(branchy, params, input_shape=(12, 12, 1))
    rf = receptive_field(probe, "branch")
    assert (rf.size, rf.stride, rf.start, rf.method) == ((5, 5), (1, 1), (-2, -2), "gradient")
    with pytest.raises(ValueError, match="cannot follow the input gradient of 'loop'.*'while'"):
        receptive_field(probe, "loop")
