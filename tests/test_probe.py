"""Probe over NNX, Linen and plain-function models, checked against hand-computed forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxvis as jv

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, size=(3, 6, 6, 2)).astype(np.float32)


def conv_same_3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reference 'SAME' 3x3 cross-correlation with explicit loops (NHWC, HWIO)."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[-1]), np.float64)
    for i in range(h):
        for j in range(w):
            window = padded[:, i : i + 3, j : j + 3, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", window, kernel)
    return out + bias


class Block(nnx.Module):
    def __init__(self, channels: int, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(channels, channels, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(self.conv(x))


class TinyNNX(nnx.Module):
    """A conv, a list of blocks, and a Sequential head: the shapes users write."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(2, 3, (3, 3), rngs=rngs)
        self.blocks = nnx.List([Block(3, rngs), Block(3, rngs)])
        self.head = nnx.Sequential(
            nnx.Linear(3, 5, rngs=rngs), nnx.relu, nnx.Linear(5, 4, rngs=rngs)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.tanh(self.conv1(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=(1, 2)))


def nnx_reference(model: TinyNNX, x: np.ndarray) -> dict[str, np.ndarray]:
    def p(module: nnx.Module, name: str) -> np.ndarray:
        return np.asarray(getattr(module, name)[...], np.float64)

    out = {"conv1": conv_same_3x3(x, p(model.conv1, "kernel"), p(model.conv1, "bias"))}
    h = np.tanh(out["conv1"])
    for i, block in enumerate(model.blocks):
        out[f"blocks.{i}.conv"] = conv_same_3x3(h, p(block.conv, "kernel"), p(block.conv, "bias"))
        h = out[f"blocks.{i}"] = np.tanh(out[f"blocks.{i}.conv"])
    first, second = model.head.layers[0], model.head.layers[2]
    out["head.layers.0"] = h.mean(axis=(1, 2)) @ p(first, "kernel") + p(first, "bias")
    hidden = np.maximum(out["head.layers.0"], 0)
    out["head.layers.2"] = out["head"] = hidden @ p(second, "kernel") + p(second, "bias")
    return out


@pytest.fixture(scope="module")
def nnx_model() -> TinyNNX:
    return TinyNNX(nnx.Rngs(0))


@pytest.fixture(scope="module")
def nnx_probe(nnx_model: TinyNNX) -> jv.Probe:
    return jv.Probe(nnx_model, input_shape=(6, 6, 2), class_names="abcd")


def test_nnx_layers_in_call_order_with_module_paths(nnx_probe: jv.Probe) -> None:
    assert nnx_probe.layer_names == (
        "conv1",
        "blocks.0.conv",
        "blocks.0",
        "blocks.1.conv",
        "blocks.1",
        "head.layers.0",
        "head.layers.2",
        "head",
    )
    conv1 = nnx_probe.layer("conv1")
    assert conv1 == jv.Layer("conv1", "Conv", (6, 6, 3), "float32", 3 * 3 * 2 * 3 + 3)
    assert nnx_probe.layer("head").n_params == 0  # its own: the Linears count theirs
    assert nnx_probe.layer("head.layers.0").n_params == 3 * 5 + 5
    rows = {row["name"]: row for row in nnx_probe.summary()}
    assert rows["head"]["total_params"] == (3 * 5 + 5) + (5 * 4 + 4)
    assert nnx_probe.layer("blocks.0").kind == "Block"


def test_nnx_activations_match_hand_computed_forward(
    nnx_model: TinyNNX, nnx_probe: jv.Probe
) -> None:
    reference = nnx_reference(nnx_model, X.astype(np.float64))
    acts = nnx_probe.activations(X)
    assert list(acts) == list(nnx_probe.layer_names)
    for name, value in acts.items():
        np.testing.assert_allclose(np.asarray(value), reference[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(nnx_probe(X)), reference["head"], rtol=1e-4, atol=1e-5)


def test_model_is_not_modified(nnx_model: TinyNNX) -> None:
    before = jax.tree.map(np.asarray, nnx.state(nnx_model))
    cls_call = type(nnx_model.conv1).__call__
    probe = jv.Probe(nnx_model, input_shape=(6, 6, 2))
    probe.activations(X, ["blocks.1"])
    after = jax.tree.map(np.asarray, nnx.state(nnx_model))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert type(nnx_model.conv1).__call__ is cls_call
    assert not hasattr(nnx_model, "__captures__")


def test_later_layers_are_not_computed() -> None:
    class Exploding(nnx.Module):
        def __call__(self, x: jax.Array) -> jax.Array:
            raise AssertionError("a layer after the requested one was traced")

    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = nnx.Conv(2, 3, (3, 3), rngs=rngs)
            self.boom = Exploding()

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.boom(self.conv(x))

    probe = jv.Probe(Net(nnx.Rngs(1)), input_shape=(6, 6, 2))
    # Listing layers needs the whole graph, so only ask for the activation by name.
    probe._layers = (jv.Layer("conv", "Conv", (6, 6, 3), "float32", 57),)
    assert probe.activations(X, "conv")["conv"].shape == (3, 6, 6, 3)


def test_same_shape_does_not_compile_again() -> None:
    traces: list[tuple[int, ...]] = []

    class Counting(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.conv = nnx.Conv(2, 3, (3, 3), rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            traces.append(x.shape)  # runs only while JAX traces
            return self.conv(x)

    probe = jv.Probe(Counting(nnx.Rngs(2)), input_shape=(6, 6, 2))
    _ = probe.layers
    traces.clear()
    for _ in range(3):
        probe.activations(RNG.uniform(size=(3, 6, 6, 2)).astype(np.float32), ["conv"])
    assert len(traces) == 1
    probe.activations(RNG.uniform(size=(5, 6, 6, 2)).astype(np.float32), ["conv"])
    assert len(traces) == 2


def test_summary_has_layer_settings(nnx_probe: jv.Probe) -> None:
    rows = {row["name"]: row for row in nnx_probe.summary()}
    assert rows["conv1"]["kernel_size"] == (3, 3)
    assert rows["conv1"]["padding"] == "SAME"
    assert rows["conv1"]["out_features"] == 3
    assert rows["head.layers.0"]["out_features"] == 5
    assert rows["conv1"]["shape"] == (6, 6, 3)


def test_weights_by_layer(nnx_model: TinyNNX, nnx_probe: jv.Probe) -> None:
    weights = nnx_probe.weights()
    assert set(weights["conv1"]) == {"kernel", "bias"}
    np.testing.assert_array_equal(
        weights["conv1"]["kernel"], np.asarray(nnx_model.conv1.kernel[...])
    )
    assert "blocks.0" in weights  # containers report their submodules' parameters


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.tanh(nn.Conv(3, (3, 3), name="conv1")(x))
        x = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(4)], name="head")(x.mean(axis=(1, 2)))
        return x


def test_linen_probe_matches_hand_computed_forward() -> None:
    module = LinenNet()
    variables = module.init(jax.random.key(0), X)
    probe = jv.Probe(module, variables, input_shape=(6, 6, 2))
    # Linen names modules by the scope that created them, as its params do.
    assert probe.layer_names == ("conv1", "Dense_0", "Dense_1", "head")
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    conv = conv_same_3x3(X.astype(np.float64), params["conv1"]["kernel"], params["conv1"]["bias"])
    dense0 = np.tanh(conv).mean(axis=(1, 2)) @ params["Dense_0"]["kernel"]
    dense0 = dense0 + params["Dense_0"]["bias"]
    acts = probe.activations(X, ["conv1", "Dense_0"])
    np.testing.assert_allclose(np.asarray(acts["conv1"]), conv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(acts["Dense_0"]), dense0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probe(X), module.apply(variables, X), rtol=1e-6)
    assert probe.layer("conv1").n_params == 3 * 3 * 2 * 3 + 3
    assert probe.summary()[0]["features"] == 3


def test_plain_function_with_taps() -> None:
    w = RNG.normal(size=(72, 4)).astype(np.float32)

    def model(params, x):
        h = jv.tap("hidden", jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]))
        return jv.tap("logits", 2.0 * h)

    probe = jv.Probe(model, {"w": w}, input_shape=(6, 6, 2))
    assert probe.layers == (
        jv.Layer("hidden", "tap", (4,), "float32", 0),
        jv.Layer("logits", "tap", (4,), "float32", 0),
    )
    expected = np.tanh(X.reshape(3, -1).astype(np.float64) @ w)
    np.testing.assert_allclose(probe.activations(X)["hidden"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model({"w": w}, X), 2 * expected, rtol=1e-4, atol=1e-5)  # identity


def test_apply_is_pure_and_differentiable(nnx_probe: jv.Probe) -> None:
    def objective(x):
        _, acts = nnx_probe.apply(nnx_probe.params, x, ["blocks.0"])
        return acts["blocks.0"][..., 1].mean()

    grad = jax.grad(objective)(jnp.asarray(X))
    eps = 1e-2
    bump = np.zeros_like(X)
    bump[0, 2, 3, 1] = eps
    finite = (objective(X + bump) - objective(X - bump)) / (2 * eps)
    np.testing.assert_allclose(grad[0, 2, 3, 1], finite, rtol=2e-2)


def test_input_shape_inferred_from_first_batch(nnx_model: TinyNNX) -> None:
    probe = jv.Probe(nnx_model)
    with pytest.raises(ValueError, match="input_shape"):
        _ = probe.layers
    assert probe(X).shape == (3, 4)
    assert probe.layers[0].shape == (6, 6, 3)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (X[0], ValueError, r"4 axes.*x\[None\]"),
        (X[..., :1], ValueError, "channel count.*expected \\(N, 6, 6, 2\\)"),
        (X[:, :5], ValueError, "image shape"),
        ((X * 255).astype(np.uint8), TypeError, "float"),
        (np.where(X > 0.5, np.nan, X).astype(np.float32), ValueError, "NaN or inf"),
        (X[:0], ValueError, "empty batch"),
        ([[1.0]], TypeError, "numpy or jax array"),
    ],
)
def test_bad_inputs_are_named(nnx_probe: jv.Probe, x, error, match) -> None:
    with pytest.raises(error, match=match):
        nnx_probe.activations(x)


def test_unknown_layer_suggests_close_names(nnx_probe: jv.Probe) -> None:
    with pytest.raises(ValueError, match="did you mean 'blocks.0.conv'"):
        nnx_probe.activations(X, ["blocks.0.cnv"])
    with pytest.raises(ValueError, match="known layers: conv1"):
        nnx_probe.layer("zzzzzz")


def test_bad_constructor_arguments(nnx_model: TinyNNX) -> None:
    with pytest.raises(TypeError, match="variables"):
        jv.Probe(LinenNet())
    with pytest.raises(TypeError, match="model must be"):
        jv.Probe(42)
    with pytest.raises(ValueError, match="input_range"):
        jv.Probe(nnx_model, input_range=(1, 0))
    with pytest.raises(ValueError, match="input_shape"):
        jv.Probe(nnx_model, input_shape=(6, 6))


def test_run_gives_output_and_activations_in_one_call(
    nnx_model: TinyNNX, nnx_probe: jv.Probe
) -> None:
    reference = nnx_reference(nnx_model, X.astype(np.float64))
    logits, acts = nnx_probe.run(X, ["conv1"])
    assert list(acts) == ["conv1"]
    np.testing.assert_allclose(np.asarray(acts["conv1"]), reference["conv1"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), reference["head"], rtol=1e-4, atol=1e-5)
