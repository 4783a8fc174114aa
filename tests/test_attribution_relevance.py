"""The relevance family (LRP, DeepLift) against zennit and Captum on the zoo models' PyTorch
twins (same weights), against closed forms (conservation, a linear model), and on a Linen ResNet
with BatchNorm and skip connections."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax import nnx

import jaxvis as jv
from jaxvis.attribution import deeplift, lrp, trace_counts
from jaxvis.zoo.models import host_init

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _torch_nets import (  # noqa: E402
    INPUT_SHIFT,
    _GlobalAvgPool,  # noqa: E402
    torch_twin,
)
from _zennit_shim import zennit  # noqa: E402, F401
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import (  # noqa: E402
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    LayerMapComposite,
)
from zennit.rules import Epsilon, Norm, Pass  # noqa: E402
from zennit.types import Activation, AvgPool, Convolution  # noqa: E402


@pytest.fixture(scope="module", params=["mnist_cnn", "shapes_cnn"])
def zoo(request):
    zoo = jv.zoo.load(request.param)
    net = torch_twin(zoo.probe, INPUT_SHIFT.get(request.param, 0.0))
    return zoo, net


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def _zennit(net, x: np.ndarray, target: np.ndarray, composite) -> np.ndarray:
    inp = _nchw(x).requires_grad_(True)
    onehot = torch.nn.functional.one_hot(torch.tensor(target), net(inp).shape[-1]).float()
    with Gradient(model=net, composite=composite) as attributor:
        _, rel = attributor(inp, lambda out: onehot * out)  # output relevance: the logit
    return np.transpose(rel.detach().numpy(), (0, 2, 3, 1))


# the twins' global average pooling is a custom module: give it zennit's rule for mean pooling
GAP = [(_GlobalAvgPool, Norm())]


def test_lrp_equals_zennit(zoo) -> None:
    zoo, net = zoo
    x = zoo.x_test[:3]
    target = np.array([1, 2, 0])
    shift = INPUT_SHIFT.get(zoo.name, 0.0)  # the conv1 input range, in the twin's own terms
    composites = {
        "epsilon": LayerMapComposite(
            GAP
            + [
                (Activation, Pass()),
                (AvgPool, Norm()),
                (Convolution, Epsilon(1e-3)),
                (torch.nn.Linear, Epsilon(1e-3)),
            ]
        ),
        "epsilon_alpha2_beta1": EpsilonAlpha2Beta1(epsilon=1e-3, layer_map=GAP),
        "epsilon_gamma_box": EpsilonGammaBox(
            low=0.0 + shift, high=1.0 + shift, epsilon=1e-3, layer_map=GAP
        ),
    }
    for name, composite in composites.items():
        ours = lrp(zoo.probe, x, target, composite=name, epsilon=1e-3)
        ref = _zennit(net, x, target, composite)
        scale = np.abs(ref).max()
        np.testing.assert_allclose(np.asarray(ours.values), ref, atol=2e-4 * scale, err_msg=name)
        assert np.abs(ref).sum() > 0


def test_deeplift_equals_captum(zoo) -> None:
    from captum.attr import DeepLift

    zoo, net = zoo
    x = zoo.x_test[3:5]
    target = np.array([2, 5])
    base = np.full_like(x, 0.2)
    ours = deeplift(zoo.probe, x, target, baseline=base)
    attr, delta = DeepLift(net).attribute(
        _nchw(x), _nchw(base), target=torch.tensor(target), return_convergence_delta=True
    )
    ref = np.transpose(attr.detach().numpy(), (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(ours.values), ref, atol=1e-4 * np.abs(ref).max())
    # the same completeness gap as Captum's (nonzero only through max pooling)
    np.testing.assert_allclose(np.asarray(ours.delta), delta.detach().numpy(), atol=1e-4)
    split = deeplift(zoo.probe, x, target, baseline=base, max_pool="split")
    gap = np.abs(np.asarray(split.score - split.baseline_score))
    np.testing.assert_array_less(np.abs(np.asarray(split.delta)), 1e-4 * gap.max() + 1e-5)
    if zoo.name == "shapes_cnn":  # no max pooling: the rules agree, completeness holds
        np.testing.assert_allclose(np.asarray(split.values), np.asarray(ours.values), atol=1e-6)
        np.testing.assert_array_less(np.abs(np.asarray(ours.delta)), 1e-4 * gap.max() + 1e-5)
    else:
        assert np.abs(np.asarray(ours.delta)).max() > 1e-2  # the gradient leaks through max


class _BiasFree(nnx.Module):
    """conv-relu-maxpool-conv-relu-avgpool-dense, bias-free: relevance is conserved."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(2, 6, (3, 3), use_bias=False, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), use_bias=False, rngs=rngs)
        self.dense = nnx.Linear(8, 4, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(jax.nn.relu(self.conv1(x)), (2, 2), (2, 2))
        x = nnx.avg_pool(jax.nn.relu(self.conv2(x)), (2, 2), (2, 2))
        return self.dense(jnp.mean(x, axis=(1, 2)))


def _host(model_fn) -> nnx.Module:
    """An NNX model with its parameters drawn on the host (no JAX random compiles)."""
    return host_init(nnx.eval_shape(lambda: model_fn(nnx.Rngs(0))), seed=0, kernel_gain=2.0)


def _positive_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def test_conservation_bias_free() -> None:
    probe = jv.Probe(_host(_BiasFree), input_shape=(12, 12, 2))
    x = _positive_images(3, (12, 12, 2))
    out = np.asarray(probe(x))
    target = out.argmax(-1)  # positive logits: z+ conserves relevance of a positive score
    score = out[np.arange(3), target]
    for composite in ("epsilon", "zplus"):
        res = lrp(probe, x, target, composite=composite, epsilon=1e-9)
        total = np.asarray(res.values).sum(axis=(1, 2, 3))
        np.testing.assert_allclose(total, score, rtol=1e-4, err_msg=composite)
        np.testing.assert_allclose(np.asarray(res.delta), 0.0, atol=1e-4 * np.abs(score).max())


def test_linear_model_gives_w_times_x() -> None:
    w = np.random.default_rng(1).normal(size=(5 * 5 * 3, 4)).astype(np.float32)

    def model(params, x):
        return x.reshape(x.shape[0], -1) @ params["w"]

    probe = jv.Probe(model, {"w": jnp.asarray(w)}, input_shape=(5, 5, 3))
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype(np.float32)
    res = lrp(probe, x, np.array([0, 3]), composite="epsilon", epsilon=0.0)
    expected = x.reshape(2, -1) * w[:, [0, 3]].T
    np.testing.assert_allclose(
        np.asarray(res.values).reshape(2, -1), expected, rtol=1e-5, atol=1e-6
    )


def test_bad_options_raise_before_compiling() -> None:
    probe = jv.zoo.load("mnist_cnn").probe
    x = np.zeros((1, 28, 28, 1), np.float32)
    before = dict(trace_counts())
    with pytest.raises(ValueError, match="composite must be one of"):
        lrp(probe, x, 0, composite="nonsense")
    with pytest.raises(ValueError, match="unknown LRP rule 'gama' for layer 'conv2'"):
        lrp(probe, x, 0, composite={"conv2": "gama"})
    with pytest.raises(ValueError, match="'conv9', which is not a convolution"):
        lrp(probe, x, 0, composite={"conv9": "gamma"})
    with pytest.raises(ValueError, match="epsilon must be a finite number"):
        lrp(probe, x, 0, epsilon=-1.0)
    with pytest.raises(ValueError, match="baseline"):
        deeplift(probe, x, 0, baseline="nope")
    assert trace_counts() == before


class _Gated(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(2, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv(x)
        h = h * jax.nn.sigmoid(h)  # a gate: two activations multiplied
        return self.dense(h.mean(axis=(1, 2)))


def test_unsupported_layer_is_named() -> None:
    probe = jv.Probe(_host(_Gated), input_shape=(6, 6, 1))
    with pytest.raises(ValueError, match=r"lrp cannot handle layer .*multiplies two activations"):
        lrp(probe, np.zeros((1, 6, 6, 1), np.float32), 0)


def test_changing_target_and_rule_parameters_compiles_nothing() -> None:
    probe = jv.zoo.load("shapes_cnn").probe
    x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    lrp(probe, x, 0, composite="epsilon_gamma_box")
    deeplift(probe, x, 0)
    before = dict(trace_counts())
    lrp(probe, x, np.array([3, 4]), composite="epsilon_gamma_box", epsilon=0.1, gamma=0.5)
    deeplift(probe, x, 5, baseline=np.full_like(x, 0.5))
    assert trace_counts() == before


# --------------------------------------------------------------------------- residual nets


class _ConvBN(nn.Module):
    features: int
    bias: bool

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (3, 3), use_bias=self.bias)(x)
        return nn.BatchNorm(use_running_average=True)(x)


def _conv_bn(features: int, bias: bool) -> nn.Module:
    return _ConvBN(features, bias)


class _Block(nn.Module):
    features: int
    bias: bool

    @nn.compact
    def __call__(self, x):
        y = nn.relu(
            nn.BatchNorm(use_running_average=True)(
                nn.Conv(self.features, (3, 3), use_bias=self.bias)(x)
            )
        )
        y = nn.BatchNorm(use_running_average=True)(
            nn.Conv(self.features, (3, 3), use_bias=self.bias)(y)
        )
        return nn.relu(x + y)


class _ResNet(nn.Module):
    """stem conv+BN, two residual blocks, mean pooling, dense."""

    bias: bool = True

    @nn.compact
    def __call__(self, x):
        x = nn.relu(
            nn.BatchNorm(use_running_average=True)(nn.Conv(8, (3, 3), use_bias=self.bias)(x))
        )
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = _Block(8, self.bias)(x)
        x = _Block(8, self.bias)(x)
        return nn.Dense(5, use_bias=self.bias)(jnp.mean(x, axis=(1, 2)))


def _resnet(bias: bool) -> jv.Probe:
    """Random weights drawn on the host (no JAX random-number compiles); BatchNorm with
    non-trivial statistics, or (``bias=False``) zero means and shifts: a bias-free net."""
    module = _ResNet(bias=bias)
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    rng = np.random.default_rng(3)

    def draw(path, v):
        key = path[-1].key
        if key == "kernel":
            value = rng.normal(0, np.sqrt(2.0 / np.prod(v.shape[:-1])), v.shape)
        elif key in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, v.shape)
        else:  # bias, mean
            value = rng.normal(0, 0.1, v.shape) if bias else np.zeros(v.shape)
        return jnp.asarray(value, jnp.float32)

    variables = jax.tree_util.tree_map_with_path(draw, shapes)
    return jv.Probe(module, variables, input_shape=(16, 16, 3))


def test_batchnorm_folding_leaves_the_forward_unchanged() -> None:
    from jaxvis.attribution._relevance_graph import relevance_graph
    from jaxvis.attribution.lrp import folded_forward

    probe = _resnet(bias=True)
    x = _positive_images(2, (16, 16, 3), seed=4)
    graph = relevance_graph(probe, x.shape, "lrp")
    names = [g.name for g in graph.weighted]
    # 5 convolutions and the dense layer; each BatchNorm folded into the convolution before it
    assert len(names) == 6 and all("Conv" in n or "Dense" in n for n in names), names
    assert {len(g.chain) for g in graph.weighted[:-1]} == {4}  # bias, BN: sub, mul, add
    np.testing.assert_allclose(
        np.asarray(folded_forward(probe, x)), np.asarray(probe(x)), rtol=1e-5, atol=1e-5
    )


def test_resnet_lrp_conserves_relevance_through_skip_connections() -> None:
    probe = _resnet(bias=False)
    x = _positive_images(2, (16, 16, 3), seed=5)
    out = np.asarray(probe(x))
    target = out.argmax(-1)
    score = out[np.arange(2), target]
    assert (score > 0).all()
    res = lrp(probe, x, target, composite="zplus")
    np.testing.assert_allclose(np.asarray(res.values).sum(axis=(1, 2, 3)), score, rtol=1e-4)
    res = lrp(probe, x, target, composite="epsilon_gamma_box")  # runs, finite
    assert np.isfinite(np.asarray(res.values)).all()


def test_flax_example_resnet_folds_and_maps_rules() -> None:
    """The Flax ImageNet example's ResNet (tests/fixtures): projection shortcuts, functional
    ``nn.max_pool``, ``jnp.mean`` pooling; every BatchNorm folds into its convolution."""
    from fixtures import make_linen_resnet

    from jaxvis.attribution.lrp import folded_forward, lrp_rules

    fixture = make_linen_resnet()
    probe = jv.Probe(fixture.model, **fixture.probe_kwargs)
    x = _positive_images(2, probe.input_shape, seed=6)
    rules = lrp_rules(probe, x.shape, "epsilon_gamma_box")
    assert next(iter(rules.items())) == ("conv_init", "zbox")
    assert rules["ResNetBlock_1.conv_proj"] == "gamma" and rules["Dense_0"] == "epsilon"
    assert not any("BatchNorm" in name or "norm" in name for name in rules)
    np.testing.assert_allclose(
        np.asarray(folded_forward(probe, x)), np.asarray(probe(x)), rtol=1e-4, atol=1e-4
    )
