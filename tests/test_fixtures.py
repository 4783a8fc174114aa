"""Test fixtures in real code bases' styles (``tests/fixtures``), and what jaxvis must do.

Two kinds of checks:

* the fixtures themselves: each model's own forward pass (``apply(..., train=False)``, an
  ``eval()``-ed copy, ``jax.vmap`` over channels-first examples) equals the hand-written
  reference, the reference's layer names and intermediate values agree with the library's own
  record of submodule outputs (Linen ``capture_intermediates``, ``nnx.capture``, Equinox layers
  called one by one), BatchNorm statistics and heads are not trivial, parameter counts agree
  with closed-form counts;
* ``test_probe_matches_reference_<name>``: ``jv.Probe(model, **fixture.probe_kwargs)`` lists the
  expected layers, ``probe.activations(x)`` equals the reference for every named layer, the
  logits agree, and the user's model is unchanged afterwards (parameters, RNG state, mode).
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures import (
    FIXTURES,
    Fixture,
    make_linen_resnet,
    make_linen_vit,
    make_nnx_vit,
)
from flax import linen as nn
from flax import nnx, traverse_util

import jaxvis as jv


@functools.cache
def fixture(name: str) -> Fixture:
    """Each small fixture built once per test session (2 CPU cores)."""
    return FIXTURES[name]()


def assert_close(got: Any, want: Any, name: str, tol: float = 1e-4) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape}, expected {want.shape}"
    scale = 1.0 + float(np.max(np.abs(want)))
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= tol * scale, f"{name}: max |difference| {err:.3g} (scale {scale:.3g})"


# ---------------------------------------------------------------------- closed-form counts


def resnet_params(stages, bottleneck: bool, filters: int, classes: int, in_ch: int = 3) -> int:
    total = 7 * 7 * in_ch * filters + 2 * filters  # conv_init, bn_init
    c_in = filters
    for i, size in enumerate(stages):
        width = filters * 2**i
        c_out = 4 * width if bottleneck else width
        for j in range(size):
            stride = 2 if i > 0 and j == 0 else 1
            if bottleneck:
                total += c_in * width + 2 * width + 9 * width * width + 2 * width
                total += width * c_out + 2 * c_out
            else:
                total += 9 * c_in * width + 2 * width + 9 * width * width + 2 * width
            if stride != 1 or c_in != c_out:
                total += c_in * c_out + 2 * c_out  # conv_proj, norm_proj
            c_in = c_out
    return total + c_in * classes + classes


def vit_params(image: int, patch: int, dim: int, layers: int, mlp: int, classes: int) -> int:
    tokens = (image // patch) ** 2 + 1
    block = 4 * dim + 4 * (dim * dim + dim) + (dim * mlp + mlp) + (mlp * dim + dim)
    embed = patch * patch * 3 * dim + dim + dim + tokens * dim  # conv, class token, positions
    return embed + layers * block + 2 * dim + dim * classes + classes


def convnext_params(depths, dims, classes: int) -> int:
    total = 4 * 4 * 3 * dims[0] + dims[0] + 2 * dims[0]
    for i in range(len(dims) - 1):
        total += 2 * dims[i] + 4 * dims[i] * dims[i + 1] + dims[i + 1]
    for depth, d in zip(depths, dims, strict=True):
        total += depth * (49 * d + d + 2 * d + 4 * d * d + 4 * d + 4 * d * d + d + d)
    return total + 2 * dims[-1] + dims[-1] * classes + classes


def eqx_cnn_params(in_ch: int, image: int, width: int, hidden: int, classes: int) -> int:
    flat = 2 * width * (image // 4) ** 2
    return (
        9 * in_ch * width + width + 9 * width * 2 * width + 2 * width
        + flat * hidden + hidden + hidden * classes + classes
    )  # fmt: skip


EXPECTED_PARAMS = {
    "linen_resnet": resnet_params([1, 1], False, 8, 10),
    "linen_resnet_bottleneck": resnet_params([1, 1], True, 8, 10),
    "linen_vit": vit_params(32, 8, 32, 2, 128, 10),
    "nnx_vit": vit_params(32, 8, 32, 2, 128, 10),
    "nnx_vit_list": vit_params(32, 8, 32, 2, 128, 10),
    "nnx_convnext": convnext_params([1, 1], [16, 32], 10),
    "eqx_cnn": eqx_cnn_params(3, 32, 8, 32, 10),
    "eqx_cnn_sequential": eqx_cnn_params(3, 32, 8, 32, 10),
    "eqx_cnn_list": eqx_cnn_params(3, 32, 8, 32, 10),
}


def test_closed_form_counts_of_the_known_architectures() -> None:
    assert resnet_params([2, 2, 2, 2], False, 64, 1000) == 11_689_512  # torchvision resnet18
    assert resnet_params([3, 4, 6, 3], True, 64, 1000) == 25_557_032  # torchvision resnet50
    assert vit_params(224, 16, 384, 12, 1536, 1000) == 22_050_664  # timm vit_small_patch16_224
    assert convnext_params([3, 3, 9, 3], [96, 192, 384, 768], 1000) == 28_589_128  # tiny


# ---------------------------------------------------------------------- the fixtures themselves


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_model_forward_equals_reference(name: str) -> None:
    f = fixture(name)
    x = f.sample(3)
    logits = np.asarray(f.forward(x))
    want = f.reference(x)
    assert_close(logits, want["logits"], f"{name} logits")
    assert logits.shape == (3, f.info["num_classes"])
    # a head that is not zero: logits differ across classes and across inputs
    assert np.std(logits, axis=1).min() > 1e-3
    assert np.std(logits, axis=0).min() > 1e-4
    for layer in f.expected_layers:
        assert layer in want, f"{name}: expected layer {layer!r} has no reference activation"
    for layer, value in want.items():
        assert np.all(np.isfinite(np.asarray(value))), f"{name}: {layer} not finite"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_n_params_is_the_true_count(name: str) -> None:
    f = fixture(name)
    assert f.n_params == EXPECTED_PARAMS[name]
    if f.variables is not None:  # Linen: the params collection only, no batch statistics
        flat = traverse_util.flatten_dict(f.variables["params"])
        assert f.n_params == sum(int(np.prod(np.shape(v))) for v in flat.values())
    elif isinstance(f.model, nnx.Module):
        params = [v for _, v in nnx.iter_graph(f.model) if isinstance(v, nnx.Param)]
        assert f.n_params == sum(int(np.size(v.get_value())) for v in params)
    else:
        arrays = jax.tree_util.tree_leaves(eqx.filter(f.model, eqx.is_array))
        assert f.n_params == sum(int(a.size) for a in arrays)


@pytest.mark.parametrize("name", ["linen_resnet", "linen_vit", "linen_resnet_bottleneck"])
def test_linen_reference_names_and_values_are_flax_own(name: str) -> None:
    """Every reference activation is the output Flax itself records for that scope path."""
    f = fixture(name)
    x = f.sample(2)
    _, state = f.model.apply(
        f.variables, jnp.asarray(x), train=False, capture_intermediates=True,
        mutable=["intermediates"],
    )  # fmt: skip
    captured = {
        ".".join(path[:-1]): value[0]
        for path, value in traverse_util.flatten_dict(state["intermediates"]).items()
        if path[-1] == "__call__" and len(path) > 1
    }
    want = f.reference(x)
    for layer, value in want.items():
        if layer == "logits":
            continue
        assert layer in captured, f"{name}: {layer!r} is not a Linen scope path"
        assert_close(value, captured[layer], f"{name} {layer}")


@pytest.mark.parametrize("name", ["nnx_vit_list", "nnx_convnext"])
def test_nnx_reference_names_and_values_are_flax_own(name: str) -> None:
    """Every reference activation is what ``nnx.capture(method_outputs=...)`` records."""
    f = fixture(name)
    model = nnx.clone(f.model)
    model.eval()
    x = f.sample(2)
    _, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(jnp.asarray(x))
    captured = {
        ".".join(map(str, path[:-1])): var.get_value()[0]
        for path, var in nnx.to_flat_state(inter)
        if path[-1] == "__call__"
    }
    want = f.reference(x)
    for layer, value in want.items():
        if layer == "logits":
            continue
        assert layer in captured, f"{name}: {layer!r} is not a module path"
        assert_close(value, captured[layer], f"{name} {layer}")


def test_nnx_vit_stacked_and_list_share_layer_names() -> None:
    stacked, listed = fixture("nnx_vit"), fixture("nnx_vit_list")
    x = stacked.sample(1)
    assert list(stacked.reference(x)) == list(listed.reference(x))
    assert stacked.expected_layers == listed.expected_layers
    # the stacked variant really is one module with a leading layer axis, run by nnx.scan
    kernel = stacked.model.encoder.blocks.attn.query.kernel
    assert kernel.shape[0] == 2 and isinstance(listed.model.encoder.blocks, nnx.List)


@pytest.mark.parametrize("name", ["eqx_cnn", "eqx_cnn_sequential", "eqx_cnn_list"])
def test_eqx_reference_values_are_equinox_own(name: str) -> None:
    """Each reference activation is the Equinox layer's output, per example, channels-last."""
    f = fixture(name)
    x = f.sample(2)
    want = f.reference(x)
    chw = jnp.transpose(jnp.asarray(x), (0, 3, 1, 2))
    if name == "eqx_cnn":
        m = f.model
        steps = [
            ("conv1", m.conv1), (None, jax.nn.relu), ("pool1", m.pool1),
            ("conv2", m.conv2), (None, jax.nn.relu), ("pool2", m.pool2),
            (None, jnp.ravel), ("fc1", m.fc1), (None, jax.nn.relu), ("fc2", m.fc2),
        ]  # fmt: skip
    else:
        steps = [(f"layers.{i}", layer) for i, layer in enumerate(f.model.layers)]
    h = chw
    for layer, fn in steps:
        h = jax.vmap(fn)(h)
        if layer is None or (layer not in want and not isinstance(fn, eqx.Module)):
            continue
        assert layer in want, f"{name}: module {layer!r} has no reference activation"
        value = jnp.transpose(h, (0, 2, 3, 1)) if h.ndim == 4 else h
        assert_close(want[layer], value, f"{name} {layer}")
    assert_close(want["logits"], h, f"{name} logits")


def test_batch_norm_statistics_are_estimated() -> None:
    for name in ("linen_resnet", "linen_resnet_bottleneck"):
        f = fixture(name)
        stats = traverse_util.flatten_dict(f.variables["batch_stats"])
        for path, value in stats.items():
            value = np.asarray(value)
            if path[-1] == "mean":
                assert np.abs(value).max() > 1e-3, f"{name} {path}: mean still zero"
            else:
                assert np.abs(value - 1).max() > 1e-2, f"{name} {path}: var still one"
                assert value.min() > 0
        # eval mode normalises about as well as training mode did
        acts = f.reference(f.sample(4, seed=7))
        std = np.asarray(acts["bn_init"]).std(axis=(0, 1, 2))
        assert std.min() > 0.2 and std.max() < 5, std
        scales = [v for p, v in traverse_util.flatten_dict(f.variables["params"]).items()
                  if p[-1] == "scale"]  # fmt: skip
        assert min(float(np.abs(s).min()) for s in scales) >= 0.5  # no zero-init scale left


def test_zero_initialised_parameters_are_redrawn() -> None:
    vit = fixture("linen_vit").variables["params"]
    assert np.abs(vit["cls"]).min() > 0 and np.abs(vit["head"]["kernel"]).max() > 0
    for name in ("nnx_vit", "nnx_vit_list"):
        model = fixture(name).model
        assert np.abs(np.asarray(model.cls_token[...])).max() > 0
    gamma = fixture("nnx_convnext").model.stages[0].layers[0].gamma[...]
    assert np.asarray(gamma).min() > 0.1  # not the 1e-6 layer scale


@pytest.mark.parametrize("name", ["nnx_vit", "nnx_vit_list"])
def test_nnx_vit_is_left_in_training_mode(name: str) -> None:
    """As a user gets it: dropout on, two calls differ, eval mode equals the reference."""
    f = fixture(name)
    dropouts = [m for _, m in nnx.iter_modules(f.model) if isinstance(m, nnx.Dropout)]
    assert dropouts and not any(m.deterministic for m in dropouts)
    model = nnx.clone(f.model)
    x = jnp.asarray(f.sample(2))
    first, second = np.asarray(model(x)), np.asarray(model(x))
    assert np.abs(first - second).max() > 1e-3
    assert np.abs(first - np.asarray(f.forward(x))).max() > 1e-3


@pytest.mark.parametrize("name", ["linen_vit", "nnx_vit", "nnx_vit_list"])
def test_attention_weights_are_softmax_of_scaled_query_key(name: str) -> None:
    f = fixture(name)
    x = f.sample(2)
    acts, weights = f.reference(x), f.attention(x)
    assert list(weights) == list(f.info["attention_layers"])
    tokens = f.info["token_grid"][0] * f.info["token_grid"][1] + 1
    for layer, w in weights.items():
        assert w.shape == (2, f.info["num_heads"], tokens, tokens)
        assert_close(np.asarray(w).sum(-1), np.ones(w.shape[:-1]), f"{layer} rows")
        flax_w = nn.dot_product_attention_weights(acts[f"{layer}.query"], acts[f"{layer}.key"])
        assert_close(w, flax_w, f"{name} {layer} weights")


def test_reference_is_differentiable_for_brute_force_receptive_fields() -> None:
    """The input-gradient support of a ``conv_init`` unit is its 7x7 stride-2 window."""
    f = fixture("linen_resnet")
    x = jnp.asarray(f.sample(1))

    def unit(x: jax.Array) -> jax.Array:
        return f.reference(x)["conv_init"][0, 4, 4, 0]

    support = np.argwhere(np.abs(np.asarray(jax.grad(unit)(x)))[0].sum(-1) > 0)
    assert support.min(0).tolist() == [5, 5] and support.max(0).tolist() == [11, 11]


# ---------------------------------------------------------------------- what jaxvis must do


def _host(value: Any) -> np.ndarray:
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)  # dropout's RNG key: compare its bits
    return np.asarray(value)


def _user_state(f: Fixture) -> list[np.ndarray]:
    """Everything about the user's model that probing must leave as it was."""
    if f.variables is not None:
        return [np.asarray(v) for v in jax.tree_util.tree_leaves(f.variables)]
    if isinstance(f.model, nnx.Module):
        state = [_host(v.get_value()) for _, v in nnx.iter_graph(f.model)
                 if isinstance(v, nnx.Variable)]  # fmt: skip
        modes = [np.asarray(bool(getattr(m, "deterministic", False)))
                 for _, m in nnx.iter_modules(f.model)]  # fmt: skip
        return state + modes
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(f.model, eqx.is_array))]


def check_probe(f: Fixture) -> None:
    before = _user_state(f)
    probe = jv.Probe(f.model, **f.probe_kwargs)
    names = probe.layer_names
    missing = [layer for layer in f.expected_layers if layer not in names]
    assert not missing, f"{f.name}: probe lacks layers {missing}; it lists {list(names)}"
    x = f.sample(2)
    want = f.reference(x)
    layers = [layer for layer in want if layer != "logits"]
    unlisted = [layer for layer in layers if layer not in names]
    assert not unlisted, f"{f.name}: probe lacks layers {unlisted}; it lists {list(names)}"
    got = probe.activations(x, layers=layers)
    for layer in layers:
        assert_close(got[layer], want[layer], f"{f.name} probe {layer}")
    assert_close(probe(x), want["logits"], f"{f.name} probe logits")
    again = probe.activations(x, layers=layers[-1:])  # same answer again (no frozen dropout)
    assert_close(again[layers[-1]], want[layers[-1]], f"{f.name} probe second call")
    after = _user_state(f)
    assert len(before) == len(after)
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        assert a.shape == b.shape and np.array_equal(a, b), f"{f.name}: user state {i} changed"


@pytest.mark.parametrize("name", ["linen_resnet", "linen_resnet_bottleneck"])
def test_probe_matches_reference_linen_resnet(name: str) -> None:
    check_probe(fixture(name))


def test_probe_matches_reference_linen_vit() -> None:
    check_probe(fixture("linen_vit"))


@pytest.mark.parametrize("name", ["nnx_vit", "nnx_vit_list"])
def test_probe_matches_reference_nnx_vit(name: str) -> None:
    check_probe(fixture(name))


def test_probe_matches_reference_nnx_convnext() -> None:
    check_probe(fixture("nnx_convnext"))


@pytest.mark.parametrize("name", ["eqx_cnn", "eqx_cnn_sequential", "eqx_cnn_list"])
def test_probe_matches_reference_eqx_cnn(name: str) -> None:
    check_probe(fixture(name))


# ---------------------------------------------------------------------- 224x224


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "vit_s16", "nnx_vit_s16"])
def test_full_size_models_at_224(arch: str) -> None:
    """ResNet-18/50 (Flax example), ViT-S/16 (vision_transformer; jimm-style NNX, 12 blocks
    stacked and scanned) at 224x224 with 1000 classes: logits and true parameter counts."""
    if arch in ("vit_s16", "nnx_vit_s16"):
        make = make_linen_vit if arch == "vit_s16" else make_nnx_vit
        f = make(
            224, patch_size=16, hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536,
            num_classes=1000,
        )  # fmt: skip
        expected = 22_050_664
    else:
        bottleneck = arch == "resnet50"
        stages = [3, 4, 6, 3] if bottleneck else [2, 2, 2, 2]
        f = make_linen_resnet(
            224, stage_sizes=stages, block="bottleneck" if bottleneck else "basic",
            num_filters=64, num_classes=1000, stat_batches=2, stat_batch_size=2,
        )  # fmt: skip
        expected = 25_557_032 if bottleneck else 11_689_512
    assert f.n_params == expected
    x = f.sample(2)
    want = f.reference(x)
    assert_close(f.forward(x), want["logits"], f"{arch} logits", tol=1e-3)
    assert np.std(np.asarray(want["logits"]), axis=1).min() > 1e-3
