"""Attention as layers: capture from Flax Linen/NNX attention and jv.tap, attention maps,
rollout and gradient rollout against numpy references, compile counts, the widget.

Fixtures are small ViTs (32x32 input, patch 8, dim 32, 2 blocks, 4 heads) written as real code
bases write them: a Linen ViT in the style of google-research/vision_transformer (with
``nn.MultiHeadDotProductAttention`` and attention dropout switched off by ``train=False``), an
NNX ViT whose blocks live in an ``nnx.List`` (``nnx.MultiHeadAttention``), and the same network
written by hand with ``jv.tap(..., kind="attention")``. The hand-written one is also the
independent reference: Linen and NNX parameters are converted to it, and it takes additive
edits of its attention weights directly, for gradients that do not go through jaxvis.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxvis as jv
from jaxvis.attribution import (
    attention_layers,
    attention_map,
    attention_rollout,
    gradient_rollout,
    trace_counts,
)

DIM, HEADS, DEPTH, PATCH, SIZE, CLASSES = 32, 4, 2, 8, 32, 5
GRID = SIZE // PATCH
TOKENS = 1 + GRID * GRID
X = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)


# --------------------------------------------------------------------------- Linen ViT


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        x = nn.Dense(self.mlp_dim)(inputs)
        x = nn.gelu(x)
        return nn.Dense(inputs.shape[-1])(x)


class Encoder1DBlock(nn.Module):
    num_heads: int
    mlp_dim: int
    attention_dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, inputs: jax.Array, *, deterministic: bool) -> jax.Array:
        x = nn.LayerNorm()(inputs)
        x = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            deterministic=deterministic,
            broadcast_dropout=False,
        )(x, x)
        x = x + inputs
        y = nn.LayerNorm()(x)
        return x + MlpBlock(self.mlp_dim)(y)


class Encoder(nn.Module):
    num_layers: int
    mlp_dim: int
    num_heads: int

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        shape = (1, x.shape[1], x.shape[2])
        x = x + self.param("pos_embedding", nn.initializers.normal(0.02), shape)
        for lyr in range(self.num_layers):
            x = Encoder1DBlock(self.num_heads, self.mlp_dim, name=f"encoderblock_{lyr}")(
                x, deterministic=not train
            )
        return nn.LayerNorm(name="encoder_norm")(x)


class VisionTransformer(nn.Module):
    num_classes: int
    patch: int
    hidden_size: int

    @nn.compact
    def __call__(self, inputs: jax.Array, *, train: bool) -> jax.Array:
        p = (self.patch, self.patch)
        x = nn.Conv(self.hidden_size, p, strides=p, padding="VALID", name="embedding")(inputs)
        n, h, w, c = x.shape
        x = jnp.reshape(x, (n, h * w, c))
        cls = self.param("cls", nn.initializers.normal(0.5), (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (n, 1, 1)), x], axis=1)
        x = Encoder(DEPTH, 2 * c, HEADS, name="Transformer")(x, train=train)
        return nn.Dense(self.num_classes, name="head")(x[:, 0])


# --------------------------------------------------------------------------- NNX ViT


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(nnx.gelu(self.fc1(x)))


class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=heads, in_features=dim, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = Mlp(dim, 2 * dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.patch_embed = nnx.Conv(
            3, DIM, (PATCH, PATCH), strides=PATCH, padding="VALID", rngs=rngs
        )
        self.cls_token = nnx.Param(jax.random.normal(rngs.params(), (1, 1, DIM)) * 0.5)
        self.pos_embed = nnx.Param(jax.random.normal(rngs.params(), (1, TOKENS, DIM)) * 0.02)
        self.blocks = nnx.List([Block(DIM, HEADS, rngs) for _ in range(DEPTH)])
        self.norm = nnx.LayerNorm(DIM, rngs=rngs)
        self.head = nnx.Linear(DIM, CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, DIM))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


# --------------------------------------------------------------------------- by hand


def _ln(x: jax.Array, p: dict) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def vit_by_hand(params: dict, x: jax.Array, deltas: list | None = None) -> jax.Array:
    """The fixture ViT in plain jnp; attention weights tapped, plus ``deltas[i]`` if given."""
    n = x.shape[0]
    patches = x.reshape(n, GRID, PATCH, GRID, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    tokens = patches.reshape(n, GRID * GRID, -1) @ params["embed"]["kernel"].reshape(-1, DIM)
    tokens = tokens + params["embed"]["bias"]
    cls = jnp.broadcast_to(params["cls"], (n, 1, DIM))
    h = jnp.concatenate([cls, tokens], axis=1) + params["pos"]
    for i, blk in enumerate(params["blocks"]):
        y = _ln(h, blk["ln1"])
        q, k, v = (
            jnp.einsum("ntd,dhe->nthe", y, blk[s]["kernel"]) + blk[s]["bias"]
            for s in ("q", "k", "v")
        )
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
        w = jv.tap(f"blocks.{i}.attn", jax.nn.softmax(logits, axis=-1), kind="attention")
        if deltas is not None:
            w = w + deltas[i]
        mixed = jnp.einsum("nhqk,nkhd->nqhd", w, v)
        h = h + jnp.einsum("nqhd,hde->nqe", mixed, blk["o"]["kernel"]) + blk["o"]["bias"]
        y = _ln(h, blk["ln2"])
        y = jax.nn.gelu(y @ blk["fc1"]["kernel"] + blk["fc1"]["bias"])
        h = h + y @ blk["fc2"]["kernel"] + blk["fc2"]["bias"]
    h = _ln(h, params["norm"])
    return h[:, 0] @ params["head"]["kernel"] + params["head"]["bias"]


def _kb(d: dict) -> dict:
    return {"kernel": jnp.asarray(d["kernel"]), "bias": jnp.asarray(d["bias"])}


def _sb(d: dict) -> dict:
    return {"scale": jnp.asarray(d["scale"]), "bias": jnp.asarray(d["bias"])}


def linen_to_hand(variables: dict) -> dict:
    p = variables["params"]
    t = p["Transformer"]
    blocks = []
    for i in range(DEPTH):
        b = t[f"encoderblock_{i}"]
        att = b["MultiHeadDotProductAttention_0"]
        blocks.append(
            {
                "ln1": _sb(b["LayerNorm_0"]),
                "ln2": _sb(b["LayerNorm_1"]),
                **{
                    s: _kb(att[n])
                    for s, n in zip("qkvo", ("query", "key", "value", "out"), strict=True)
                },
                "fc1": _kb(b["MlpBlock_0"]["Dense_0"]),
                "fc2": _kb(b["MlpBlock_0"]["Dense_1"]),
            }
        )
    return {
        "embed": _kb(p["embedding"]),
        "cls": p["cls"],
        "pos": t["pos_embedding"],
        "blocks": blocks,
        "norm": _sb(t["encoder_norm"]),
        "head": _kb(p["head"]),
    }


def nnx_to_hand(model: ViT) -> dict:
    def kb(m: nnx.Module) -> dict:
        return {"kernel": m.kernel[...], "bias": m.bias[...]}

    def sb(m: nnx.Module) -> dict:
        return {"scale": m.scale[...], "bias": m.bias[...]}

    blocks = [
        {
            "ln1": sb(b.norm1),
            "ln2": sb(b.norm2),
            "q": kb(b.attn.query),
            "k": kb(b.attn.key),
            "v": kb(b.attn.value),
            "o": kb(b.attn.out),
            "fc1": kb(b.mlp.fc1),
            "fc2": kb(b.mlp.fc2),
        }
        for b in model.blocks
    ]
    return {
        "embed": kb(model.patch_embed),
        "cls": model.cls_token[...],
        "pos": model.pos_embed[...],
        "blocks": blocks,
        "norm": sb(model.norm),
        "head": kb(model.head),
    }


@functools.cache
def linen() -> tuple[jv.Probe, dict]:
    model = VisionTransformer(CLASSES, PATCH, DIM)
    variables = model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False)
    probe = jv.Probe(model, variables, input_shape=(SIZE, SIZE, 3), call_kwargs={"train": False})
    return probe, linen_to_hand(variables)


@functools.cache
def nnx_vit() -> tuple[jv.Probe, dict, ViT]:
    model = ViT(nnx.Rngs(1))
    return jv.Probe(model, input_shape=(SIZE, SIZE, 3)), nnx_to_hand(model), model


def tapped_probe() -> jv.Probe:
    return jv.Probe(vit_by_hand, nnx_vit()[1], input_shape=(SIZE, SIZE, 3))


@functools.cache
def tapped() -> tuple[jv.Probe, dict]:
    return tapped_probe(), nnx_vit()[1]


def fixture(kind: str) -> tuple[jv.Probe, dict]:
    if kind == "linen":
        return linen()
    if kind == "nnx":
        return nnx_vit()[:2]
    return tapped()


KINDS = ("linen", "nnx", "tap")
PREFIX = {
    "linen": "Transformer.encoderblock_{}.MultiHeadDotProductAttention_0",
    "nnx": "blocks.{}.attn",
}


# --------------------------------------------------------------------------- numpy references


def np_rollout(weights: list, fusion: str, ratio: float, prefix: int = 1) -> np.ndarray:
    """Abnar & Zuidema's rollout, one example and one block at a time, in float64."""
    n, _, t, _ = np.shape(weights[0])
    result = np.repeat(np.eye(t)[None], n, 0)
    for a in weights:
        a = np.asarray(a, np.float64)
        fused = {"mean": a.mean(1), "max": a.max(1), "min": a.min(1)}[fusion]
        for i in range(n):
            flat = fused[i].reshape(-1)
            candidates = [j for j in range(t * t) if j % t >= prefix]  # keys after the cls
            k = int(np.floor(np.float32(ratio) * np.float32(len(candidates))))
            flat[sorted(candidates, key=lambda j: flat[j])[:k]] = 0.0
        step = fused + np.eye(t)
        step = step / step.sum(-1, keepdims=True)
        result = step @ result
    return result[:, 0, prefix:].reshape(n, GRID, GRID)


def np_gradient_rollout(weights: list, grads: list, prefix: int = 1) -> np.ndarray:
    """Chefer et al.'s rule: R += mean_heads(relu(grad * A)) @ R, from the identity."""
    n, _, t, _ = np.shape(weights[0])
    relevance = np.repeat(np.eye(t)[None], n, 0)
    for a, g in zip(weights, grads, strict=True):
        cam = np.maximum(np.asarray(g, np.float64) * np.asarray(a, np.float64), 0).mean(1)
        relevance = relevance + cam @ relevance
    return relevance[:, 0, prefix:].reshape(n, GRID, GRID)


def hand_weights(hand: dict, x: np.ndarray) -> list[np.ndarray]:
    """The attention weights of ``vit_by_hand``, read through a probe-free recorder."""
    probe = jv.Probe(vit_by_hand, hand, input_shape=(SIZE, SIZE, 3))
    acts = probe.activations(x)
    return [np.asarray(acts[f"blocks.{i}.attn"]) for i in range(DEPTH)]


# --------------------------------------------------------------------------- capture


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_flax_attention_weights_are_softmax_of_captured_q_k(kind: str) -> None:
    probe, hand = fixture(kind)
    names = attention_layers(probe)
    assert names == tuple(PREFIX[kind].format(i) + ".attention_weights" for i in range(DEPTH))
    for name in names:
        layer = probe.layer(name)
        assert (layer.kind, layer.shape, layer.n_params) == (
            "attention",
            (HEADS, TOKENS, TOKENS),
            0,
        )
        lay = probe.layout(name)
        assert lay.kind == "attention"
        assert (lay.grid.rows, lay.grid.cols, lay.grid.prefix) == (GRID, GRID, 1)
    module = PREFIX[kind].format(1)
    acts = probe.activations(X, [f"{module}.attention_weights", f"{module}.query", f"{module}.key"])
    q, k = acts[f"{module}.query"], acts[f"{module}.key"]
    ref = jax.nn.softmax(jnp.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    np.testing.assert_allclose(acts[f"{module}.attention_weights"], ref, atol=1e-6)
    # the probe runs the model unchanged: logits equal the hand-written forward pass
    np.testing.assert_allclose(probe(X), vit_by_hand(hand, X), atol=2e-5)
    np.testing.assert_allclose(hand_weights(hand, X)[1], ref, atol=2e-6)


def test_nnx_model_is_unchanged_and_probes_in_two_threads_do_not_mix() -> None:
    probe, _, model = nnx_vit()
    before = jax.tree.map(np.asarray, nnx.state(model))
    probe.activations(X, attention_layers(probe))
    assert all(b.attn.attention_fn is nnx.dot_product_attention for b in model.blocks)
    assert "attention_fn" not in vars(type(model.blocks[0].attn))
    after = jax.tree.map(np.asarray, nnx.state(model))
    jax.tree.map(np.testing.assert_array_equal, before, after)

    def names(make: Callable[[], jv.Probe], out: list) -> None:
        out.append(attention_layers(make()))

    results: list[list] = [[], []]
    makers = [lambda: jv.Probe(model, input_shape=(SIZE, SIZE, 3)), lambda: tapped_probe()]
    threads = [
        threading.Thread(target=names, args=(m, r)) for m, r in zip(makers, results, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == [tuple(f"blocks.{i}.attn.attention_weights" for i in range(DEPTH))]
    assert results[1] == [tuple(f"blocks.{i}.attn" for i in range(DEPTH))]


def test_tap_kind_attention() -> None:
    probe, hand = tapped()
    assert attention_layers(probe) == tuple(f"blocks.{i}.attn" for i in range(DEPTH))
    assert probe.layout("blocks.0.attn").kind == "attention"
    with pytest.raises(ValueError, match=r"\(N, heads, T, T\)"):
        jv.tap("w", jnp.zeros((2, 3, 4)), kind="attention")
    with pytest.raises(TypeError, match="kind"):
        jv.tap("w", jnp.zeros((2, 3)), kind="")


@pytest.mark.parametrize("kind", KINDS)
def test_captured_weights_are_what_the_model_uses(kind: str) -> None:
    """Editing a captured attention layer changes the output as editing the hand-written one."""
    from jaxvis.attribution._edit import edited_apply

    probe, hand = fixture(kind)
    name = attention_layers(probe)[0]
    delta = np.random.default_rng(1).normal(size=(2, HEADS, TOKENS, TOKENS)).astype(np.float32)
    out, _ = edited_apply(probe, probe.params, X, {name: lambda a: a + 0.1 * delta})
    ref = vit_by_hand(hand, X, [0.1 * delta, 0.0])
    np.testing.assert_allclose(out, ref, atol=2e-5)
    assert np.abs(np.asarray(out) - np.asarray(probe(X))).max() > 1e-3


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fusion", "ratio"), [("mean", 0.0), ("max", 0.5), ("min", 0.9)])
def test_rollout_equals_numpy_rollout_of_captured_weights(
    kind: str, fusion: str, ratio: float
) -> None:
    probe, _ = fixture(kind)
    names = attention_layers(probe)
    weights = [np.asarray(w) for w in probe.activations(X, names).values()]
    res = attention_rollout(probe, X, head_fusion=fusion, discard_ratio=ratio)
    ref = np_rollout(weights, fusion, ratio)
    np.testing.assert_allclose(res.extra["layer_map"], ref, rtol=1e-4, atol=1e-6)
    assert res.values.shape == (2, SIZE, SIZE, 1)
    np.testing.assert_allclose(
        res.values[..., 0],
        jax.image.resize(jnp.asarray(ref, jnp.float32), (2, SIZE, SIZE), "bilinear"),
        rtol=1e-4,
        atol=1e-6,
    )
    one = attention_rollout(probe, X, head_fusion=fusion, discard_ratio=ratio, layers=names[1:])
    np.testing.assert_allclose(one.extra["layer_map"], np_rollout(weights[1:], fusion, ratio), 1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_rollout_equals_hand_computation(kind: str) -> None:
    probe, hand = fixture(kind)
    target = np.array([1, 3])
    weights = hand_weights(hand, X)

    def logit(deltas: list) -> jax.Array:
        out = vit_by_hand(hand, X, deltas)
        return jnp.take_along_axis(out, jnp.asarray(target)[:, None], 1).sum()

    zeros = [jnp.zeros((2, HEADS, TOKENS, TOKENS))] * DEPTH
    grads = jax.grad(logit)(zeros)
    res = gradient_rollout(probe, X, target)
    ref = np_gradient_rollout(weights, grads)
    assert np.abs(ref - np.eye(TOKENS)[0, 1:].reshape(GRID, GRID)).max() > 1e-4  # not trivial
    np.testing.assert_allclose(res.extra["layer_map"], ref, rtol=2e-3, atol=1e-6)
    np.testing.assert_array_equal(res.target, target)
    np.testing.assert_allclose(res.score, np.asarray(vit_by_hand(hand, X))[[0, 1], target], 1e-4)
    predicted = gradient_rollout(probe, X)
    np.testing.assert_array_equal(predicted.target, np.argmax(probe(X), -1))


@pytest.mark.parametrize("kind", KINDS)
def test_attention_map_picks_the_query_row(kind: str) -> None:
    probe, _ = fixture(kind)
    names = attention_layers(probe)
    weights = [np.asarray(w) for w in probe.activations(X, names).values()]
    cases = [
        (0, None, "cls", weights[0].mean(1)[:, 0]),
        (-1, 2, "cls", weights[1][:, 2, 0]),
        (1, 0, (2, 3), weights[1][:, 0, 1 + 2 * GRID + 3]),
        (names[0], None, 5, weights[0].mean(1)[:, 5]),
    ]
    for layer, head, query, row in cases:
        res = attention_map(probe, X, layer=layer, head=head, query=query)
        np.testing.assert_allclose(
            res.extra["layer_map"], row[:, 1:].reshape(2, GRID, GRID), rtol=1e-5, atol=1e-7
        )
        assert res.values.shape == (2, SIZE, SIZE, 1)


def test_changing_block_head_query_target_does_not_recompile() -> None:
    probe, _ = linen()
    attention_map(probe, X, layer=0)
    attention_rollout(probe, X)
    gradient_rollout(probe, X, 0)
    before = trace_counts()
    for block, head, query in [(1, 0, "cls"), (0, 3, (1, 1)), (-1, None, 7)]:
        attention_map(probe, X, layer=block, head=head, query=query)
    for fusion, ratio in [("max", 0.3), ("min", 0.9), ("mean", 0.5)]:
        attention_rollout(probe, X, head_fusion=fusion, discard_ratio=ratio)
    for target in (1, [2, 4], None):
        gradient_rollout(probe, X, target)
    assert trace_counts() == before


def _cnn(params: dict, x: jax.Array) -> jax.Array:
    h = jv.tap("hidden", jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]))
    return h @ params["v"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda p: attention_map(p, X, layer=0, head=4), ValueError, r"head must be in \[0, 3\]"),
        (lambda p: attention_map(p, X, layer=0, head=True), TypeError, "head"),
        (lambda p: attention_map(p, X, layer=5), ValueError, "block index"),
        (lambda p: attention_map(p, X, layer="head"), ValueError, "not an attention layer"),
        (lambda p: attention_map(p, X, layer=0, query=(4, 0)), ValueError, "4x4 patch grid"),
        (lambda p: attention_map(p, X, layer=0, query=17), ValueError, "query token"),
        (lambda p: attention_map(p, X, layer=0, query="mean"), ValueError, "query"),
        (lambda p: attention_rollout(p, X, head_fusion="sum"), ValueError, "head_fusion"),
        (lambda p: attention_rollout(p, X, discard_ratio=1.0), ValueError, r"\[0, 1\)"),
        (lambda p: attention_rollout(p, X, discard_ratio=-0.1), ValueError, r"\[0, 1\)"),
        (lambda p: attention_rollout(p, X, layers=[]), ValueError, "at least one"),
        (lambda p: gradient_rollout(p, X, target=9), ValueError, "out of range"),
    ],
)
def test_bad_arguments_raise_before_compiling(call, error: type, match: str) -> None:  # noqa: ANN001
    probe, _ = linen()
    before = trace_counts()
    with pytest.raises(error, match=match):
        call(probe)
    assert trace_counts() == before


def test_model_without_attention_is_refused() -> None:
    params = {"w": jnp.ones((SIZE * SIZE * 3, 4)), "v": jnp.ones((4, 2))}
    probe = jv.Probe(_cnn, params, input_shape=(SIZE, SIZE, 3))
    for method in (attention_rollout, gradient_rollout):
        with pytest.raises(ValueError, match="no attention layers"):
            method(probe, X)
    with pytest.raises(ValueError, match="no attention layers"):
        attention_map(probe, X, layer=0)


# --------------------------------------------------------------------------- widget


def test_widget_click_changes_the_query_and_the_picture() -> None:
    probe, _ = linen()
    w = jv.widgets.AttentionExplorer(probe, X)
    assert "jv-attention" in w._dom_classes and w.errors.error == ""
    assert w.query == "cls" and w.block.value == DEPTH - 1 and w.result.method == "attention_map"
    geometry = w.picture.geometry
    assert (geometry["rows"], geometry["cols"], geometry["n_tiles"]) == (GRID, GRID, GRID * GRID)
    assert geometry["tile_w"] * GRID == geometry["img_width"]
    first = w.overlay_png
    assert first.startswith(b"\x89PNG")
    before = trace_counts()
    w.picture.selected = 6  # what a click on patch (1, 2) sends
    assert w.query == (1, 2) and w.result.settings["query"] == (1, 2)
    assert w.overlay_png != first and "patch (1, 2)" in w.caption.value
    ref = attention_map(probe, X[:1], layer=DEPTH - 1, query=(1, 2)).extra["layer_map"]
    np.testing.assert_allclose(w.result.extra["layer_map"], ref)
    assert w.picture.tile_at(2.5 * geometry["tile_w"], 1.5 * geometry["tile_h"]) == 6
    w.head.value, w.block.value = 2, 0
    assert (
        w.result.settings["head"] == 2 and w.result.settings["layer"] == attention_layers(probe)[0]
    )
    assert trace_counts() == before  # clicks, heads and blocks reuse the compiled function
    w.cls.click()
    assert w.query == "cls" and w.picture.selected == -1
    w.method.value = "attention_rollout"
    assert w.result.method == "attention_rollout" and w.head.disabled and not w.discard.disabled
    w.discard.value = 0.5
    assert w.result.settings["discard_ratio"] == 0.5
    w.method.value = "gradient_rollout"
    w.target.value = 3
    assert w.result.method == "gradient_rollout" and int(w.result.target[0]) == 3
    w.index.value = 1
    assert w.errors.error == "" and w.caption.value.startswith("image 1")


def test_widget_shows_errors_in_place_and_recovers() -> None:
    w = jv.widgets.AttentionExplorer(nnx_vit()[0], X)
    original = w.compute

    def broken() -> None:
        raise ValueError("query patch off the grid")

    w.compute = broken  # type: ignore[method-assign]
    w.picture.selected = 3
    assert "off the grid" in w.errors.error and "jv-error" in w.errors.value
    w.compute = original  # type: ignore[method-assign]
    w.picture.selected = 4
    assert w.errors.error == "" and w.query == (1, 0)
    params = {"w": jnp.ones((SIZE * SIZE * 3, 4)), "v": jnp.ones((4, 2))}
    with pytest.raises(ValueError, match="no attention layers"):
        jv.widgets.AttentionExplorer(jv.Probe(_cnn, params, input_shape=(SIZE, SIZE, 3)), X)
