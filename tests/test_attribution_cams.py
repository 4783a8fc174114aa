"""Grad-CAM++, LayerCAM and Score-CAM against their formulas written here in PyTorch (autograd
on the PyTorch twin of each zoo model, same weights), and on a ViT's tokens against a plain
``jnp`` forward pass (tests/test_tokens.py's hand-written ViT)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_tokens as tok
import torch
import torch.nn.functional as F

import jaxvis as jv
from jaxvis.attribution import grad_cam_plus_plus, layer_cam, score_cam, trace_counts

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from _torch_nets import INPUT_SHIFT, torch_twin  # noqa: E402

LAYERS = {"mnist_cnn": "act6", "shapes_cnn": "conv6"}


@functools.cache
def load(name: str):  # noqa: ANN201
    """One zoo model per test module: jaxvis compiles per probe, so the tests share programs."""
    return jv.zoo.load(name)


@pytest.fixture(scope="module", params=["mnist_cnn", "shapes_cnn"])
def zoo(request: pytest.FixtureRequest):  # noqa: ANN201
    z = load(request.param)
    net = torch_twin(z.probe, INPUT_SHIFT.get(request.param, 0.0))
    return request.param, z, net


def torch_layer(net: torch.nn.Module, layer: str, x: np.ndarray, y: np.ndarray) -> tuple:
    """``(gradient, activation)`` at ``layer`` (NCHW) of the target logits' sum, by autograd."""
    store = {}

    def hook(_m, _i, out):  # noqa: ANN001, ANN202
        store["a"] = out
        return out

    handle = getattr(net, layer).register_forward_hook(hook)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    try:  # the input needs a gradient for a graph to exist (the twin's weights have none)
        xt.requires_grad_(True)
        logits = net(xt)
    finally:
        handle.remove()
    score = logits[torch.arange(len(y)), torch.tensor(y).long()].sum()
    (g,) = torch.autograd.grad(score, store["a"])
    return g.double(), store["a"].detach().double(), xt.detach()


def torch_up(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    up = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)
    return up[:, 0].numpy()


def close(got: jax.Array, want: np.ndarray, tol: float = 1e-4) -> None:
    got = np.asarray(got)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_grad_cam_plus_plus_and_layer_cam_equal_torch_formulas(zoo) -> None:
    name, z, net = zoo
    x, y = z.x_test[:6], z.y_test[:6].astype(np.int32)
    g, a, _ = torch_layer(net, LAYERS[name], x, y)
    size = x.shape[1:3]
    # Grad-CAM++ (pytorch-grad-cam's closed form of the exponential-score weights)
    g2, g3 = g**2, g**3
    alpha = torch.where(g != 0, g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g3 + 1e-6), 0.0)
    w = (torch.relu(g) * alpha).sum((2, 3), keepdim=True)
    want = torch.relu((w * a).sum(1))
    res = grad_cam_plus_plus(z.probe, x, y, layer=LAYERS[name])
    assert res.values.shape == (6, *size, 1) and res.settings["layer"] == LAYERS[name]
    close(res.extra["layer_map"], want.numpy())
    close(res.values[..., 0], torch_up(want, size))
    # LayerCAM
    want = torch.relu((torch.relu(g) * a).sum(1))
    res = layer_cam(z.probe, x, y, layer=LAYERS[name])
    close(res.extra["layer_map"], want.numpy())
    close(res.values[..., 0], torch_up(want, size))
    signed = layer_cam(z.probe, x, y, layer=LAYERS[name], relu=False)
    close(signed.extra["layer_map"], (torch.relu(g) * a).sum(1).numpy())


def test_score_cam_equals_a_torch_loop_over_channels(zoo) -> None:
    name, z, net = zoo
    x, y = z.x_test[:3], z.y_test[:3].astype(np.int32)
    _, a, xt = torch_layer(net, LAYERS[name], x, y)
    size = x.shape[1:3]
    scores = []
    with torch.no_grad():
        for c in range(a.shape[1]):
            up = F.interpolate(a[:, c : c + 1].float(), size=size, mode="bilinear")
            lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
            mask = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-30), 0.0)
            out = net(xt * mask)
            scores.append(out[torch.arange(len(y)), torch.tensor(y).long()].double())
        scores = torch.stack(scores, 1)
        base = net(torch.zeros_like(xt))[torch.arange(len(y)), torch.tensor(y).long()].double()
    weights = torch.softmax(scores, 1)
    want = torch.relu((weights[:, :, None, None] * a).sum(1))
    res = score_cam(z.probe, x, y, layer=LAYERS[name], batch_size=5)
    close(res.extra["channel_scores"], scores.numpy())
    close(res.extra["channel_weights"], weights.numpy(), 1e-4)
    close(res.extra["layer_map"], want.numpy())
    close(res.values[..., 0], torch_up(want, size))
    raw = score_cam(z.probe, x, y, layer=LAYERS[name], softmax=False, relu=False)
    gain = scores - base[:, None]
    close(raw.extra["channel_weights"], gain.numpy())
    close(raw.extra["layer_map"], (gain[:, :, None, None] * a).sum(1).numpy())


def test_cams_on_vit_tokens_use_the_patch_grid() -> None:
    probe = jv.Probe(tok.ViT(), tok.vit_variables(), input_shape=(tok.SIZE, tok.SIZE, 3))
    params = tok.vit_variables()["params"]
    x = np.random.default_rng(0).random((3, tok.SIZE, tok.SIZE, 3)).astype(np.float32)
    y = np.asarray(jnp.argmax(probe(x), -1))
    n, grid = len(x), tok.GRID

    def score(tokens: jax.Array) -> jax.Array:
        return jnp.take_along_axis(tok.plain_head(params, tokens, 0), jnp.asarray(y)[:, None], 1)

    tokens = tok.plain_tokens(params, jnp.asarray(x), 0)
    grads = jax.grad(lambda t: score(t).sum())(tokens)
    g = np.asarray(grads[:, 1:], np.float64).reshape(n, grid, grid, -1)
    a = np.asarray(tokens[:, 1:], np.float64).reshape(n, grid, grid, -1)
    g2 = g * g
    alpha = np.where(g != 0, g2 / (2 * g2 + a.sum((1, 2), keepdims=True) * g2 * g + 1e-6), 0)
    w = (np.maximum(g, 0) * alpha).sum((1, 2), keepdims=True)
    pp = grad_cam_plus_plus(probe, x, y, relu=False)  # random weights: relu(map) is all 0
    assert pp.settings["layer"] == "Transformer.encoderblock_0"
    close(pp.extra["layer_map"], (w * a).sum(-1), 1e-3)
    lc = layer_cam(probe, x, y)
    close(lc.extra["layer_map"], np.maximum((np.maximum(g, 0) * a).sum(-1), 0), 1e-3)
    # Score-CAM: each token channel on the 4x4 grid, upsampled, masks the image
    up = np.asarray(jax.image.resize(a, (n, tok.SIZE, tok.SIZE, a.shape[-1]), "bilinear"))
    lo, hi = up.min((1, 2), keepdims=True), up.max((1, 2), keepdims=True)
    masks = (up - lo) / (hi - lo)
    plain = jax.jit(lambda z: tok.plain_head(params, tok.plain_tokens(params, z, -1), -1))
    masked = (x[None] * np.moveaxis(masks, -1, 0)[..., None]).reshape(-1, *x.shape[1:])
    logits = np.asarray(plain(jnp.asarray(masked, jnp.float32))).reshape(a.shape[-1], n, -1)
    s = logits[:, np.arange(n), y].T
    wts = np.exp(s - s.max(1, keepdims=True))
    wts /= wts.sum(1, keepdims=True)
    sc = score_cam(probe, x, y, batch_size=8, relu=False)
    assert sc.values.shape == (n, tok.SIZE, tok.SIZE, 1)
    close(sc.extra["channel_scores"], s, 1e-3)
    close(sc.extra["layer_map"], (wts[:, None, None] * a).sum(-1), 1e-3)


def test_changing_traced_options_compiles_nothing_new() -> None:
    z = load("mnist_cnn")
    x = z.x_test[:6]  # the shapes of the tests above: with them, nothing here compiles
    grad_cam_plus_plus(z.probe, x, 1)
    layer_cam(z.probe, x, 1)
    score_cam(z.probe, x[:3], 1, batch_size=5)
    before = trace_counts()
    grad_cam_plus_plus(z.probe, x, [2, 3, 4, 5, 6, 7], relu=False, eps=1e-3)
    layer_cam(z.probe, x, None, relu=False)
    score_cam(z.probe, x[:3], 7, batch_size=5, softmax=False, relu=False, baseline="white")
    after = trace_counts()
    for name in ("grad_cam_plus_plus", "layer_cam", "score_cam"):
        assert after[name] == before[name], name
    assert jv.attribution.get_method("score_cam").layer_map
    assert set(jv.attribution.methods("cam")) >= {"grad_cam_plus_plus", "layer_cam", "score_cam"}


def test_bad_options_are_refused_before_compiling() -> None:
    z = load("mnist_cnn")
    x = z.x_test[:2]
    before = trace_counts()
    for fn in (grad_cam_plus_plus, layer_cam, score_cam):
        with pytest.raises(ValueError, match="act66"):
            fn(z.probe, x, 1, layer="act66")
        with pytest.raises(ValueError, match="'dense1'.*needs an"):
            fn(z.probe, x, 1, layer="dense1")
        with pytest.raises(ValueError, match="target class 12"):
            fn(z.probe, x, 12)
    with pytest.raises(ValueError, match="eps must be"):
        grad_cam_plus_plus(z.probe, x, 1, eps=-1.0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        score_cam(z.probe, x, 1, batch_size=0)
    with pytest.raises(ValueError, match="one baseline"):
        score_cam(z.probe, x, 1, baseline=["black", "white"])
    assert trace_counts() == before
