"""Every tool on every fixture in a real code base's style, against an independent answer.

The fixtures (``tests/fixtures``: the Flax-example Linen ResNet with functional ``nn.max_pool``
and BatchNorm, a vision_transformer-style Linen ViT, a jimm-style NNX ViT with blocks stacked by
``nnx.vmap`` and run by ``nnx.scan`` (and in an ``nnx.List``), an NNX ConvNeXt, an Equinox CNN
in three spellings) come with hand-written ``jnp`` reference passes. Each test runs one jaxvis
tool on ``jv.Probe(fixture.model, **fixture.probe_kwargs)`` exactly as a user would and checks
it against something jaxvis did not compute:

* layers, ``probe.summary()`` totals (each parameter once), activations: the fixture's lists,
  closed-form counts and reference pass;
* saliency, integrated gradients (Gauss-Legendre nodes from numpy), SmoothGrad (the same noise
  points): ``jax.grad`` of the model's own forward pass (``apply``, an ``eval()``-ed copy,
  ``jax.vmap`` over CHW examples);
* Grad-CAM: the gradient of a hand-written tail of the network (checked to reproduce the
  reference logits) with respect to the layer, on a ViT its tokens reshaped to the patch grid;
* feature visualisation: a few steps raise the objective, read from the reference pass;
* top-k: numpy top-k over reference activations; receptive fields: bounding boxes of the
  brute-force gradient support of units of the reference pass; attention maps and rollout:
  the reference softmax weights and a numpy rollout of them;
* every widget builds, shows no error, and its picture changes when one control moves;
* the user's model object is unchanged after all of it (last test).

Fixtures are the small 32x32 ones; probes and inputs are built once per session and shared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fixtures import FIXTURES, Fixture
from fixtures import reference as ref
from flax import nnx

import jaxvis as jv

NAMES = sorted(FIXTURES)
VITS = [name for name in NAMES if "vit" in name]
TARGETS = np.array([1, 3], np.int32)

# ---------------------------------------------------------------------- shared, built once


@functools.cache
def fixture(name: str) -> Fixture:
    return FIXTURES[name]()


def _host(value: Any) -> np.ndarray:
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)  # an RNG key: compare its bits
    return np.asarray(value)


def user_state(f: Fixture) -> list[np.ndarray]:
    """Everything about the user's model that probing must leave as it was: parameters,
    statistics, RNG state, train/eval mode."""
    if f.variables is not None:
        return [np.asarray(v) for v in jax.tree_util.tree_leaves(f.variables)]
    if isinstance(f.model, nnx.Module):
        state = [_host(v.get_value()) for _, v in nnx.iter_graph(f.model)
                 if isinstance(v, nnx.Variable)]  # fmt: skip
        modes = [np.asarray(bool(getattr(m, "deterministic", False)))
                 for _, m in nnx.iter_modules(f.model)]  # fmt: skip
        return state + modes
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(f.model, eqx.is_array))]


@functools.cache
def state_before(name: str) -> tuple[np.ndarray, ...]:
    """The user's model state before any probe saw it."""
    return tuple(user_state(fixture(name)))


@functools.cache
def probe(name: str) -> jv.Probe:
    state_before(name)
    f = fixture(name)
    return jv.Probe(f.model, **f.probe_kwargs)


@functools.cache
def images(name: str, n: int = 2, seed: int = 1) -> np.ndarray:
    return fixture(name).sample(n, seed)


@functools.cache
def reference(name: str, n: int = 2, seed: int = 1) -> dict[str, np.ndarray]:
    out = fixture(name).reference(images(name, n, seed))
    return {k: np.asarray(v) for k, v in out.items()}


@functools.cache
def input_grad(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(x, targets) -> d logit[target] / dx`` of the model's own forward pass."""
    forward = fixture(name).forward

    @jax.jit
    def grad(x: jax.Array, t: jax.Array) -> jax.Array:
        return jax.grad(lambda x: jnp.take_along_axis(forward(x), t[:, None], 1).sum())(x)

    return lambda x, t: np.asarray(grad(jnp.asarray(x), jnp.asarray(t)))


def assert_close(got: Any, want: Any, what: str, tol: float = 1e-4) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    scale = 1.0 + float(np.max(np.abs(want))) if want.size else 1.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= tol * scale, f"{what}: max |difference| {err:.3g} (scale {scale:.3g})"


def role(name: str, which: str) -> str:
    """The layer name of a role in an Equinox variant (``conv2`` or ``layers.3``)."""
    if name == "eqx_cnn":
        return which
    index = {"conv1": 0, "pool1": 2, "conv2": 3, "pool2": 5, "fc1": 7, "fc2": 9}[which]
    return f"layers.{index}"


def n_blocks(f: Fixture) -> int:
    return len(f.info["attention_layers"])


#: A layer with channels to visualise and rank, per fixture (a token layer on the ViTs).
def unit_layer(name: str) -> str:
    if name.startswith("linen_resnet"):
        return ("BottleneckResNetBlock" if "bottleneck" in name else "ResNetBlock") + "_0"
    if name == "linen_vit":
        return "Transformer.encoderblock_0"
    if name.startswith("nnx_vit"):
        return "encoder.blocks.0"
    if name == "nnx_convnext":
        return "stages.0"
    return role(name, "conv2")


#: Layers whose receptive fields are checked: a stem, one after pooling/residuals, a deep one.
def rf_layers(name: str) -> list[str]:
    if name.startswith("linen_resnet"):
        block = "BottleneckResNetBlock" if "bottleneck" in name else "ResNetBlock"
        return ["conv_init", f"{block}_0", f"{block}_1"]
    if name == "linen_vit":
        return ["embedding", "Transformer.posembed_input", "Transformer.encoderblock_0"]
    if name.startswith("nnx_vit"):
        return ["patch_embeddings", "dropout", "encoder.blocks.0"]
    if name == "nnx_convnext":
        return ["downsample_layers.0", "stages.0.layers.0.dwconv", "stages.1"]
    return [role(name, "conv1"), role(name, "pool1"), role(name, "pool2")]


def spatial(acts: np.ndarray, f: Fixture) -> np.ndarray:
    """A reference activation ``(N, h, w, C)``; tokens over the patch grid, class token out."""
    if acts.ndim == 4:
        return acts
    rows, cols = f.info["token_grid"]
    patches = acts[:, acts.shape[1] - rows * cols :]
    return patches.reshape(acts.shape[0], rows, cols, -1)


# ---------------------------------------------------------------------- layers and numbers


@pytest.mark.parametrize("name", NAMES)
def test_layers_are_listed(name: str) -> None:
    f, p = fixture(name), probe(name)
    names = p.layer_names
    missing = [layer for layer in f.expected_layers if layer not in names]
    assert not missing, f"{name}: probe lacks {missing}; it lists {list(names)}"
    unlisted = [layer for layer in reference(name) if layer != "logits" and layer not in names]
    assert not unlisted, f"{name}: reference layers {unlisted} not listed"
    if name in VITS:
        att = jv.attribution.attention_layers(p)
        assert att == tuple(f"{a}.attention_weights" for a in f.info["attention_layers"]), att


@pytest.mark.parametrize("name", NAMES)
def test_summary_counts_every_parameter_once(name: str) -> None:
    f, p = fixture(name), probe(name)
    rows = p.summary()
    total = sum(int(row["n_params"]) for row in rows)
    assert total == f.n_params, f"{name}: summary total {total:,}, model has {f.n_params:,}"
    summary = jv.widgets.ModelSummary(p)
    assert summary.total_params == f.n_params
    assert f"{f.n_params:,}" in summary.value
    for layer in f.expected_layers:
        assert f"<code>{layer}</code>" in summary.value, layer


@pytest.mark.parametrize("name", NAMES)
def test_activations_equal_reference(name: str) -> None:
    p, want = probe(name), reference(name)
    layers = [layer for layer in want if layer != "logits"]
    got = p.activations(images(name), layers=layers)
    for layer in layers:
        assert_close(got[layer], want[layer], f"{name} {layer}")
    assert_close(p(images(name)), want["logits"], f"{name} logits")


# ---------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", NAMES)
def test_saliency_is_the_gradient_of_the_models_own_forward(name: str) -> None:
    x = images(name)
    res = jv.attribution.saliency(probe(name), x, TARGETS, abs=False)
    want = input_grad(name)(x, TARGETS)
    assert np.abs(want).max() > 0
    assert_close(res.values, want, f"{name} saliency")


@pytest.mark.parametrize("name", NAMES)
def test_integrated_gradients_quadrature_and_completeness(name: str) -> None:
    f, x, steps = fixture(name), images(name), 32
    res = jv.attribution.integrated_gradients(
        probe(name), x, TARGETS, baseline="black", steps=steps
    )
    base = np.zeros_like(x)  # black of the default input range (0, 1)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = 0.5 * (nodes + 1.0), 0.5 * weights
    grads = sum(
        w * input_grad(name)(base + a * (x - base), TARGETS)
        for a, w in zip(alphas, weights, strict=True)
    )
    assert_close(res.values, (x - base) * grads, f"{name} IG values", tol=1e-3)
    rows = np.arange(len(x))
    f_x = np.asarray(f.forward(x))[rows, TARGETS]
    f_b = np.asarray(f.forward(base))[rows, TARGETS]
    assert_close(res.score, f_x, f"{name} f(x)")
    assert_close(res.baseline_score, f_b, f"{name} f(baseline)")
    total = np.asarray(res.values).reshape(len(x), -1).sum(-1)
    assert_close(res.delta, total - (f_x - f_b), f"{name} delta", tol=1e-3)
    gap = np.abs(total - (f_x - f_b)) / np.abs(f_x - f_b)
    assert gap.max() < 0.05, f"{name}: completeness gap {gap} of f(x) - f(baseline)"


@pytest.mark.parametrize("name", NAMES)
def test_smoothgrad_is_the_mean_gradient_at_the_noisy_points(name: str) -> None:
    x, samples, noise, seed = images(name), 4, 0.2, 3
    p = probe(name)
    res = jv.attribution.smoothgrad(p, x, TARGETS, noise=noise, samples=samples, seed=seed)
    # jaxvis's documented draw: sample m of example e adds sigma * normal(fold_in(key, m*N + e))
    with jax.threefry_partitionable(False):
        key = jax.random.key(seed)
        eps = np.stack([
            np.stack([
                np.asarray(jax.random.normal(jax.random.fold_in(key, m * len(x) + e), x.shape[1:]))
                for e in range(len(x))
            ])
            for m in range(samples)
        ])  # fmt: skip
    lo, hi = p.input_range
    want = np.mean(
        [input_grad(name)(x + noise * (hi - lo) * eps[m], TARGETS) for m in range(samples)], 0
    )
    assert_close(res.values, want, f"{name} SmoothGrad", tol=1e-3)
    flat = jv.attribution.smoothgrad(p, x, TARGETS, noise=0.0, samples=samples)
    assert_close(flat.values, input_grad(name)(x, TARGETS), f"{name} SmoothGrad, no noise")


# ---------------------------------------------------------------------- Grad-CAM


def _vit_block_weights(f: Fixture, block: int) -> dict[str, Any]:
    """The last block's, final norm's and head's weights under one set of names."""
    if f.name == "linen_vit":
        enc = f.variables["params"]["Transformer"]
        p = enc[f"encoderblock_{block}"]
        a, m = p["MultiHeadDotProductAttention_0"], p["MlpBlock_0"]
        return {
            "eps": 1e-6,
            "ln1": (p["LayerNorm_0"]["scale"], p["LayerNorm_0"]["bias"]),
            "att": [
                a[part][kind]
                for part in ("query", "key", "value", "out")
                for kind in ("kernel", "bias")
            ],  # fmt: skip
            "ln2": (p["LayerNorm_1"]["scale"], p["LayerNorm_1"]["bias"]),
            "fc1": (m["Dense_0"]["kernel"], m["Dense_0"]["bias"]),
            "fc2": (m["Dense_1"]["kernel"], m["Dense_1"]["bias"]),
            "norm": (enc["encoder_norm"]["scale"], enc["encoder_norm"]["bias"]),
            "head": (
                f.variables["params"]["head"]["kernel"],
                f.variables["params"]["head"]["bias"],
            ),
        }
    model = f.model
    flat = {".".join(map(str, k)): np.asarray(v[...])
            for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}  # fmt: skip

    def w(part: str) -> np.ndarray:
        if f.info["stacked"]:
            return flat[f"encoder.blocks.{part}"][block]
        return flat[f"encoder.blocks.{block}.{part}"]

    return {
        "eps": 1e-12,
        "ln1": (w("norm1.scale"), w("norm1.bias")),
        "att": [
            w(f"attn.{part}.{kind}")
            for part in ("query", "key", "value", "out")
            for kind in ("kernel", "bias")
        ],  # fmt: skip
        "ln2": (w("norm2.scale"), w("norm2.bias")),
        "fc1": (w("mlp.layers.0.kernel"), w("mlp.layers.0.bias")),
        "fc2": (w("mlp.layers.3.kernel"), w("mlp.layers.3.bias")),
        "norm": (flat["final_norm.scale"], flat["final_norm.bias"]),
        "head": (flat["classifier.kernel"], flat["classifier.bias"]),
    }


def cam_layer_and_tail(name: str) -> tuple[str, Callable[[jax.Array], jax.Array]]:
    """A Grad-CAM layer and the network after it, written out by hand from the weights."""
    f = fixture(name)
    if name.startswith("linen_resnet"):
        block = "BottleneckResNetBlock" if "bottleneck" in name else "ResNetBlock"
        dense = f.variables["params"]["Dense_0"]
        layer = f"{block}_{sum(f.info['stage_sizes']) - 1}"
        return layer, lambda a: ref.dense(a.mean((1, 2)), dense["kernel"], dense["bias"])
    if name == "nnx_convnext":
        m = f.model
        scale, bias = m.norm.scale[...], m.norm.bias[...]
        kernel, hbias = m.head.kernel[...], m.head.bias[...]
        layer = f"stages.{len(f.info['depths']) - 1}"
        return layer, lambda a: ref.dense(ref.layer_norm(a.mean((1, 2)), scale, bias, 1e-6),
                                          kernel, hbias)  # fmt: skip
    if name.startswith("eqx"):
        fc1, fc2 = (
            (f.model.fc1, f.model.fc2)
            if name == "eqx_cnn"
            else (f.model.layers[7], f.model.layers[9])
        )

        def tail(a: jax.Array) -> jax.Array:
            flat = jnp.transpose(a, (0, 3, 1, 2)).reshape(a.shape[0], -1)  # CHW ravel
            h = ref.relu(ref.dense(flat, fc1.weight.T, fc1.bias))
            return ref.dense(h, fc2.weight.T, fc2.bias)

        return role(name, "pool2"), tail
    # a ViT: the input of the last block (its output reaches the logits through the class
    # token only), then the last block, the final norm, the class token and the head
    last = n_blocks(f) - 1
    w = _vit_block_weights(f, last)
    eps = w["eps"]

    def vit_tail(x: jax.Array) -> jax.Array:
        y = ref.layer_norm(x, *w["ln1"], eps)
        x = x + ref.attention_heads(y, *w["att"])["out"]
        y = ref.layer_norm(x, *w["ln2"], eps)
        y = ref.dense(ref.gelu_tanh(ref.dense(y, *w["fc1"])), *w["fc2"])
        x = ref.layer_norm(x + y, *w["norm"], eps)
        return ref.dense(x[:, 0], *w["head"])

    prefix = "Transformer.encoderblock_" if name == "linen_vit" else "encoder.blocks."
    return f"{prefix}{last - 1}", vit_tail


@pytest.mark.parametrize("name", NAMES)
def test_grad_cam_equals_a_hand_computed_one(name: str) -> None:
    f, x = fixture(name), images(name)
    layer, tail = cam_layer_and_tail(name)
    acts = jnp.asarray(reference(name)[layer])
    assert_close(tail(acts), reference(name)["logits"], f"{name}: the hand-written tail")
    grads = jax.grad(lambda a: jnp.take_along_axis(tail(a), TARGETS[:, None], 1).sum())(acts)
    g, a = spatial(np.asarray(grads), f), spatial(np.asarray(acts), f)
    want = np.maximum((g.mean((1, 2), keepdims=True) * a).sum(-1), 0.0)
    assert want.max() > 0, f"{name}: the hand-computed map is zero"
    res = jv.attribution.grad_cam(probe(name), x, TARGETS, layer=layer)
    assert res.settings["layer"] == layer
    assert_close(res.extra["layer_map"], want, f"{name} Grad-CAM at {layer}")
    assert np.shape(res.values) == (len(x), *x.shape[1:3], 1)
    default = jv.attribution.grad_cam(probe(name), x, TARGETS)  # the default layer works too
    assert np.asarray(default.values).max() > 0, f"{name}: default Grad-CAM is zero"


# ---------------------------------------------------------------------- feature visualisation


@pytest.mark.parametrize("name", NAMES)
def test_feature_visualisation_raises_the_objective(name: str) -> None:
    f, layer, c = fixture(name), unit_layer(name), 1
    obj = jv.optvis.objectives.channel(layer, c)
    res = jv.optvis.render(probe(name), obj, steps=8, transforms=None)  # plain ascent
    assert res.images.shape == (1, *f.input_shape) and np.isfinite(res.images).all()
    # the objective read from the reference pass: the channel's mean over the map (patches)
    value = spatial(np.asarray(f.reference(res.inputs)[layer]), f)[..., c].mean()
    assert_close(res.values[0], value, f"{name} objective of the final image", tol=1e-3)
    assert res.values[0] > res.history[0, 0] and res.history[-1, 0] > res.history[0, 0], (
        f"{name}: 8 steps did not raise {obj.description}: {res.history[:, 0]} -> {res.values}"
    )


# ---------------------------------------------------------------------- dataset views


@pytest.mark.parametrize("name", NAMES)
def test_top_k_equals_numpy_top_k(name: str) -> None:
    f, layer, k = fixture(name), unit_layer(name), 4
    data = images(name, 12, 5)
    res = jv.dataset.top_k(probe(name), data, layer, k=k, batch_size=5, progress=False)
    acts = spatial(reference(name, 12, 5)[layer], f)  # (N, h, w, C)
    flat = acts.reshape(len(data), -1, acts.shape[-1])
    scores, where = flat.max(1), flat.argmax(1)  # (N, C)
    assert res.values.shape == (acts.shape[-1], k)
    for c in range(acts.shape[-1]):
        order = np.lexsort((np.arange(len(data)), -scores[:, c]))[:k]
        np.testing.assert_array_equal(res.indices[c], order, err_msg=f"{name} channel {c}")
        assert_close(res.values[c], scores[order, c], f"{name} top-k values, channel {c}")
        rows, cols = np.unravel_index(where[order, c], acts.shape[1:3])
        np.testing.assert_array_equal(res.positions[c], np.stack([rows, cols], -1))


@functools.cache
def support_fn(name: str, layer: str) -> Callable[[np.ndarray], np.ndarray]:
    """``masks (U, h, w) -> (U, H, W)``: pixels with a nonzero gradient to each unit, the union
    over 4 random images and all channels (random weights per channel), through the reference."""
    f = fixture(name)
    x = jnp.asarray(f.sample(4, seed=11))
    shape = reference(name)[layer].shape
    r = jnp.asarray(np.random.default_rng(0).standard_normal(shape[-1]), jnp.float32)

    def one(mask: jax.Array) -> jax.Array:
        def unit(x: jax.Array) -> jax.Array:
            a = f.reference(x)[layer]
            if a.ndim == 3:  # tokens (N, T, D): the mask is over the patch grid
                grid = mask.reshape(-1)
                mask_t = jnp.concatenate([jnp.zeros(a.shape[1] - grid.size), grid])
                return (a * mask_t[None, :, None] * r).sum()
            return (a * mask[None, :, :, None] * r).sum()

        g = jax.grad(unit)(x)
        return (jnp.abs(g) > 0).any(axis=(0, 3))

    batched = jax.jit(jax.vmap(one))
    return lambda masks: np.asarray(batched(jnp.asarray(masks, jnp.float32)))


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize("name", NAMES)
def test_receptive_fields_equal_the_gradient_support(name: str) -> None:
    f, p = fixture(name), probe(name)
    height, width = f.input_shape[:2]
    for layer in rf_layers(name):
        act = reference(name)[layer]
        h, w = spatial(act, f).shape[1:3]
        units = sorted({(0, 0), (0, w - 1), (h // 2, w // 2), (h - 1, 0), (h - 1, w - 1)})
        masks = np.zeros((len(units), h, w), np.float32)
        for u, (i, j) in enumerate(units):
            masks[u, i, j] = 1.0
        supports = support_fn(name, layer)(masks)
        rf = jv.dataset.receptive_field(p, layer)
        full = all(s.all() for s in supports)
        if full:  # after global attention every token sees the whole image
            assert getattr(rf, "is_global", False), f"{name} {layer}: not reported global"
        for (i, j), support in zip(units, supports, strict=True):
            assert support.any(), f"{name} {layer} unit {(i, j)} sees nothing"
            assert rf.box(i, j) == bbox(support), (
                f"{name} {layer} unit {(i, j)}: box {rf.box(i, j)}, gradient support "
                f"{bbox(support)} in a {height}x{width} image"
            )


# ---------------------------------------------------------------------- attention


def numpy_rollout(weights: list[np.ndarray], fusion: str = "mean") -> np.ndarray:
    """Abnar & Zuidema: fuse heads, add the identity, renormalise rows, multiply the blocks."""
    out = None
    for a in weights:  # (N, heads, T, T), first block first
        fused = {"mean": a.mean(1), "max": a.max(1), "min": a.min(1)}[fusion]
        step = fused + np.eye(fused.shape[-1])
        step = step / step.sum(-1, keepdims=True)
        out = step if out is None else step @ out
    return out


@pytest.mark.parametrize("name", VITS)
def test_attention_maps_are_the_reference_weights(name: str) -> None:
    f, x = fixture(name), images(name)
    rows, cols = f.info["token_grid"]
    want = {k: np.asarray(v) for k, v in f.attention(x).items()}
    p = probe(name)
    got = p.activations(x, jv.attribution.attention_layers(p))
    for module, w in want.items():
        assert_close(got[f"{module}.attention_weights"], w, f"{name} {module} weights")
    last = np.asarray(want[f.info["attention_layers"][-1]])
    res = jv.attribution.attention_map(p, x, layer=-1, head=2, query=(1, 2))
    token = 1 + 1 * cols + 2
    assert_close(res.extra["layer_map"], last[:, 2, token, 1:].reshape(-1, rows, cols),
                 f"{name} attention of patch (1, 2), head 2")  # fmt: skip
    mean = jv.attribution.attention_map(p, x, layer=0, query="cls")
    first = np.asarray(want[f.info["attention_layers"][0]])
    assert_close(mean.extra["layer_map"], first[:, :, 0, 1:].mean(1).reshape(-1, rows, cols),
                 f"{name} class token's attention, mean of heads")  # fmt: skip


@pytest.mark.parametrize("name", VITS)
def test_attention_rollout_equals_numpy_rollout(name: str) -> None:
    f, x = fixture(name), images(name)
    rows, cols = f.info["token_grid"]
    weights = [np.asarray(w, np.float64) for w in f.attention(x).values()]
    for fusion in ("mean", "max"):
        want = numpy_rollout(weights, fusion)
        res = jv.attribution.attention_rollout(probe(name), x, head_fusion=fusion)
        assert_close(res.extra["rollout"], want, f"{name} rollout ({fusion})")
        assert_close(res.extra["layer_map"], want[:, 0, 1:].reshape(-1, rows, cols),
                     f"{name} rollout map ({fusion})")  # fmt: skip


# ---------------------------------------------------------------------- widgets


@pytest.mark.parametrize("name", NAMES)
def test_layer_explorer_builds_and_updates(name: str) -> None:
    f, p = fixture(name), probe(name)
    ex = jv.widgets.LayerExplorer(p, images(name, 3, 2))
    assert not ex.error.error, ex.error.error
    assert ex.grids.names and all(png[:4] == b"\x89PNG" for png in ex.grids.pngs)
    layer = unit_layer(name)
    channels = spatial(reference(name)[layer], f).shape[-1]
    assert ex.grids.geometry_of(layer)["n_tiles"] == channels, (
        f"{name}: {layer} should show one tile per channel over its map"
    )
    before = ex.grids.png(layer)
    ex.slider.value = 2
    assert not ex.error.error, ex.error.error
    assert ex.grids.png(layer) != before, f"{name}: {layer} grid did not change"
    want = spatial(np.asarray(f.reference(images(name, 3, 2))[layer]), f)[2]
    got = ex.acts[layer]
    got = spatial(got[None], f)[0] if got.ndim == 2 else got
    assert_close(got, want, f"{name} LayerExplorer activations of {layer}")


@pytest.mark.parametrize("name", NAMES)
def test_feature_vis_widget_runs_and_updates(name: str, tmp_path) -> None:
    layer = unit_layer(name)
    fv = jv.widgets.FeatureVis(probe(name), layer=layer, channel=0, steps=8, out_dir=tmp_path)
    assert not fv.error.error, fv.error.error
    fv.run(wait=True)
    assert not fv.error.error, fv.error.error
    first = fv.preview.value
    assert first[:4] == b"\x89PNG" and fv.result is not None and fv.result.steps == 8
    fv.channel_slider.value = 1
    fv.run(wait=True)
    assert not fv.error.error, fv.error.error
    assert fv.preview.value != first, f"{name}: the preview did not change with the channel"


@pytest.mark.parametrize("name", NAMES)
def test_attribution_widget_builds_and_updates(name: str) -> None:
    x = images(name)
    w = jv.widgets.AttributionExplorer(probe(name), x, method="saliency", steps=8)
    assert not w.errors.error, w.errors.error
    first = w.overlay_png
    assert first[:4] == b"\x89PNG"
    other = next(v for _, v in w.target.options if v != w.target.value)
    w.target.value = other
    assert not w.errors.error, w.errors.error
    assert w.overlay_png != first, f"{name}: the map did not change with the class"
    want = input_grad(name)(x[:1], np.array([other], np.int32))
    assert_close(w.result.values, want, f"{name} widget saliency")
    w.method.value = "grad_cam"  # on a ViT: its tokens over the patch grid
    assert not w.errors.error, w.errors.error
    assert w.result.method == "grad_cam" and w.overlay_png[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", NAMES)
def test_unit_explorer_builds_and_updates(name: str) -> None:
    layer = unit_layer(name)
    data = images(name, 8, 4)
    ue = jv.widgets.UnitExplorer(probe(name), data, layer=layer, k=4, fv_steps=4, batch_size=5)
    assert not ue.error.error, ue.error.error
    assert ue.top_image.value[:4] == b"\x89PNG"
    assert ue.patch_image.value[:4] == b"\x89PNG", ue.patch_caption.value  # receptive fields
    assert ue.fv_image.value[:4] == b"\x89PNG"
    act, fv = ue.act_image.value, ue.fv_image.value
    ue.channel_slider.value = 1
    assert not ue.error.error, ue.error.error
    assert ue.act_image.value != act and ue.fv_image.value != fv, f"{name}: nothing redrawn"
    brute = spatial(reference(name, 8, 4)[layer], fixture(name))[..., 1].reshape(8, -1).max(1)
    np.testing.assert_array_equal(ue.top_k(layer).indices[1], np.argsort(-brute, kind="stable")[:4])


@pytest.mark.parametrize("name", NAMES)
def test_weight_histograms_build_and_update(name: str) -> None:
    wh = jv.widgets.WeightHistograms(probe(name))
    assert not wh.error.error, wh.error.error
    keys = list(wh.weights)
    assert len(keys) >= 2, keys
    first = np.array(wh.bars[0].y)
    assert first.sum() == wh.weights[keys[0]].size
    wh.layer_select.value = keys[-1]
    assert not wh.error.error, wh.error.error
    got = np.array(wh.bars[0].y)
    assert got.sum() == wh.weights[keys[-1]].size and not np.array_equal(got, first)


@pytest.mark.parametrize("name", NAMES)
def test_filter_grid_builds_and_updates(name: str) -> None:
    fg = jv.widgets.FilterGrid(probe(name))  # every fixture has convolutions
    assert not fg.error.error, fg.error.error
    first = fg.grid.png
    assert first[:4] == b"\x89PNG"
    layers = list(fg.kernels)
    if len(layers) > 1:
        fg.layer_select.value = layers[-1]
        assert fg.grid.png != first, f"{name}: the grid did not change with the layer"
    before = fg.enlarged.value
    fg.select(1, 0)
    assert not fg.error.error, fg.error.error
    assert fg.enlarged.value != before


@pytest.mark.parametrize("name", VITS)
def test_attention_explorer_builds_and_updates(name: str) -> None:
    f, x = fixture(name), images(name)
    w = jv.widgets.AttentionExplorer(probe(name), x)
    assert not w.errors.error, w.errors.error
    first = w.overlay_png
    assert first[:4] == b"\x89PNG"
    w.head.value = 1
    assert not w.errors.error and w.overlay_png != first, f"{name}: head change not drawn"
    w.picture.selected = 3  # a click on patch 3
    assert w.query == divmod(3, f.info["token_grid"][1])
    w.method.value = "attention_rollout"
    assert not w.errors.error, w.errors.error
    want = numpy_rollout([np.asarray(a, np.float64) for a in f.attention(x[:1]).values()])
    assert_close(w.result.extra["rollout"], want, f"{name} widget rollout")


# ---------------------------------------------------------------------- last: nothing changed


@pytest.mark.parametrize("name", NAMES)
def test_users_model_is_unchanged(name: str) -> None:
    """After every tool above (or, run alone, a probe and a gradient), the user's parameters,
    statistics, RNG state and mode are as they were."""
    before = state_before(name)
    jv.attribution.saliency(probe(name), images(name), TARGETS, abs=False)
    after = user_state(fixture(name))
    assert len(before) == len(after), f"{name}: the model's structure changed"
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        assert a.shape == b.shape and np.array_equal(a, b), f"{name}: user state {i} changed"
