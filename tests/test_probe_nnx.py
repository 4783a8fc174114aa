"""NNX probes on models written the way real code bases write them.

A ViT whose blocks are created with ``nnx.vmap`` and run with ``nnx.scan`` (the idiom of
jax-image-models), left in training mode (Dropout with ``rngs``); a scan used as a method
decorator; modules in ``nnx.List``, dicts, tuples, custom containers and ``nnx.Sequential``;
a conv net with BatchNorm in training mode. Activations are checked against forward passes
written here in plain ``jnp`` from the weights in the model's state, block by block.
"""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxvis as jv

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 1, size=(2, 32, 32, 3)).astype(np.float32)
DEPTH, DIM, HEADS, PATCH, CLASSES = 3, 32, 4, 8, 5
TOKENS = 1 + (32 // PATCH) ** 2


class Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.drop(self.fc2(nnx.gelu(self.fc1(x))))


class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = Mlp(dim, 2 * dim, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


class ViT(nnx.Module):
    """Patch embedding, class token, scanned blocks, final norm, head (training mode)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.patch_embed = nnx.Conv(
            3, DIM, (PATCH, PATCH), strides=PATCH, padding="VALID", rngs=rngs
        )
        self.cls_token = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, DIM)))
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, TOKENS, DIM)))

        @nnx.split_rngs(splits=DEPTH)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create_blocks(rngs: nnx.Rngs) -> Block:
            return Block(DIM, HEADS, rngs)

        self.blocks = create_blocks(rngs)
        self.norm = nnx.LayerNorm(DIM, rngs=rngs)
        self.head = nnx.Linear(DIM, CLASSES, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.patch_embed(x)
        x = x.reshape(x.shape[0], -1, DIM)
        cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, DIM))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]

        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def forward(x: jax.Array, block: Block) -> jax.Array:
            return block(x)

        x = forward(x, self.blocks)
        return self.head(self.norm(x)[:, 0])


# ------------------------------------------------------------------ the hand-written reference


def layer_norm(x: jax.Array, p: dict, eps: float = 1e-6) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * p["scale"] + p["bias"]


def dense(x: jax.Array, p: dict) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def vit_reference(params: dict, x: jax.Array) -> dict[str, jax.Array]:
    """ViT forward in plain jnp from ``nnx.state(model, nnx.Param)``, block by block."""
    out = {}
    n = x.shape[0]
    g = 32 // PATCH
    patches = x.reshape(n, g, PATCH, g, PATCH, 3).transpose(0, 1, 3, 2, 4, 5)
    kernel = params["patch_embed"]["kernel"].reshape(-1, DIM)
    out["patch_embed"] = patches.reshape(n, g, g, -1) @ kernel + params["patch_embed"]["bias"]
    h = out["patch_embed"].reshape(n, g * g, DIM)
    cls = jnp.broadcast_to(params["cls_token"], (n, 1, DIM))
    h = jnp.concatenate([cls, h], axis=1) + params["pos_embed"]
    for i in range(DEPTH):
        p = jax.tree.map(lambda a, i=i: a[i], params["blocks"])
        b = f"blocks.{i}"
        y = out[f"{b}.norm1"] = layer_norm(h, p["norm1"])
        a = p["attn"]
        q, k, v = (
            jnp.einsum("ntd,dhk->nthk", y, a[name]["kernel"]) + a[name]["bias"]
            for name in ("query", "key", "value")
        )
        out[f"{b}.attn.query"] = q
        weights = jax.nn.softmax(
            jnp.einsum("nqhk,nthk->nhqt", q, k) / np.sqrt(DIM // HEADS), axis=-1
        )
        mixed = jnp.einsum("nhqt,nthk->nqhk", weights, v)
        out[f"{b}.attn"] = jnp.einsum("nqhk,hkd->nqd", mixed, a["out"]["kernel"])
        out[f"{b}.attn"] = out[f"{b}.attn"] + a["out"]["bias"]
        h = h + out[f"{b}.attn"]
        y = layer_norm(h, p["norm2"])
        out[f"{b}.mlp.fc1"] = dense(y, p["mlp"]["fc1"])
        out[f"{b}.mlp"] = dense(jax.nn.gelu(out[f"{b}.mlp.fc1"]), p["mlp"]["fc2"])
        h = out[b] = h + out[f"{b}.mlp"]
    out["norm"] = layer_norm(h, params["norm"])
    out["head"] = dense(out["norm"][:, 0], params["head"])
    return out


def plain_params(model: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def snapshot(model: nnx.Module) -> tuple[list, list]:
    """Every variable's value (RNG keys as data) and every mode flag of ``model``."""
    values = [
        np.asarray(jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v)
        for v in jax.tree.leaves(nnx.state(model))
    ]
    flags = [
        (path, getattr(m, flag))
        for path, m in nnx.iter_modules(model)
        for flag in ("deterministic", "use_running_average")
        if hasattr(m, flag)
    ]
    return values, flags


def param_count(model: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.fixture(scope="module")
def vit() -> ViT:
    return ViT(nnx.Rngs(0))


@pytest.fixture(scope="module")
def vit_probe(vit: ViT) -> jv.Probe:
    return jv.Probe(vit, input_shape=(32, 32, 3))


# ------------------------------------------------------------------ the scanned ViT


def test_scanned_blocks_are_layers_named_by_block(vit_probe: jv.Probe) -> None:
    names = vit_probe.layer_names
    block = [
        "norm1",
        "attn.query",
        "attn.key",
        "attn.value",
        "attn.attention_weights",  # captured by jaxvis._attention
        "attn.out",
        "attn",
        "drop",
        "norm2",
        "mlp.fc1",
        "mlp.fc2",
        "mlp.drop",
        "mlp",
    ]
    expected = ["patch_embed"]
    for i in range(DEPTH):
        expected += [f"blocks.{i}.{name}" for name in block] + [f"blocks.{i}"]
    assert names == (*expected, "norm", "head")
    assert vit_probe.layer("blocks.2.attn.query").shape == (TOKENS, HEADS, DIM // HEADS)
    assert vit_probe.layer("blocks.1").kind == "Block"
    assert "evaluation mode" in repr(vit_probe)


def test_scanned_activations_match_hand_written_forward(vit: ViT, vit_probe: jv.Probe) -> None:
    reference = vit_reference(plain_params(vit), jnp.asarray(X))
    acts = vit_probe.activations(X)
    for name, expected in reference.items():
        np.testing.assert_allclose(acts[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(vit_probe(X), reference["head"], rtol=1e-4, atol=1e-5)
    # Stopping early inside block 1 gives the same activation.
    early = vit_probe.activations(X, ["blocks.1.mlp.fc1"])["blocks.1.mlp.fc1"]
    np.testing.assert_allclose(early, reference["blocks.1.mlp.fc1"], rtol=1e-4, atol=1e-5)


def test_training_mode_model_is_probed_in_eval_mode_and_left_unchanged(vit: ViT) -> None:
    before = snapshot(vit)
    assert not vit.blocks.drop.deterministic  # the user's model is in training mode
    probe = jv.Probe(vit, input_shape=(32, 32, 3))
    first, second = probe(X), probe(X)
    np.testing.assert_array_equal(first, second)  # no dropout mask, frozen or fresh
    twin = nnx.clone(vit)
    twin.eval()
    np.testing.assert_allclose(first, twin(X), rtol=1e-5, atol=1e-6)

    def objective(x: jax.Array) -> jax.Array:
        _, acts = probe.apply(probe.params, x, ["blocks.2.attn"])
        return acts["blocks.2.attn"][:, 0].sum()

    grad = jax.jit(jax.grad(objective))(jnp.asarray(X))
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    jax.grad(lambda x: probe.apply(probe.params, x)[0][:, 1].sum())(jnp.asarray(X))
    after = snapshot(vit)
    assert before[1] == after[1]  # deterministic / use_running_average flags
    for a, b in zip(before[0], after[0], strict=True):  # parameters, RNG keys and counts
        np.testing.assert_array_equal(a, b)
    assert type(vit.blocks) is Block and type(vit.head) is nnx.Linear


def test_gradients_through_scanned_blocks_match_reference(vit: ViT, vit_probe: jv.Probe) -> None:
    params = plain_params(vit)

    def ours(x: jax.Array) -> jax.Array:
        return vit_probe.apply(vit_probe.params, x, ["blocks.1.mlp.fc1"])[1]["blocks.1.mlp.fc1"][
            ..., 3
        ].sum()

    def theirs(x: jax.Array) -> jax.Array:
        return vit_reference(params, x)["blocks.1.mlp.fc1"][..., 3].sum()

    np.testing.assert_allclose(
        jax.jit(jax.grad(ours))(jnp.asarray(X)),
        jax.grad(theirs)(jnp.asarray(X)),
        rtol=1e-3,
        atol=1e-6,
    )


def test_vit_parameters_counted_once(vit: ViT, vit_probe: jv.Probe) -> None:
    per_block = (
        2 * 2 * DIM + 4 * (DIM * DIM + DIM) + (DIM * 2 * DIM + 2 * DIM) + (2 * DIM * DIM + DIM)
    )
    hand = (PATCH * PATCH * 3 * DIM + DIM) + DIM + TOKENS * DIM + DEPTH * per_block
    hand += 2 * DIM + (DIM * CLASSES + CLASSES)
    assert hand == param_count(vit) == vit_probe.n_params == 32613
    rows = vit_probe.summary()
    assert sum(row["n_params"] for row in rows) == hand
    by_name = {row["name"]: row for row in rows}
    assert by_name["blocks.1"]["n_params"] == 0
    assert by_name["blocks.1"]["total_params"] == per_block
    assert by_name["blocks.1.attn.query"]["n_params"] == DIM * DIM + DIM
    assert by_name["blocks.1.attn.query"]["depth"] == 2
    assert by_name["(other)"]["params"] == ("cls_token", "pos_embed")
    kernel = vit_probe.weights("blocks.1.attn.query")["blocks.1.attn.query"]["kernel"]
    np.testing.assert_array_equal(kernel, np.asarray(vit.blocks.attn.query.kernel[...])[1])
    html = jv.widgets.ModelSummary(vit_probe)
    assert html.total_params == hand and f"{hand:,}" in html.value
    assert "padding-left:42px'><code>blocks.1.attn.query" in html.value


# ------------------------------------------------------------------ scan as a method decorator


class Residual(nnx.Module):
    """A block whose ``__call__`` is itself scanned: called on the stack, it runs all blocks."""

    def __init__(self, dim: int, rngs: nnx.Rngs) -> None:
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.fc = nnx.Linear(dim, dim, rngs=rngs)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def __call__(self, x: jax.Array) -> jax.Array:
        return x + jnp.tanh(self.fc(self.norm(x)))


class MethodScan(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        @nnx.split_rngs(splits=4)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs: nnx.Rngs) -> Residual:
            return Residual(12, rngs)

        self.stack = create(rngs)
        self.head = nnx.Linear(12, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.stack(x.reshape(x.shape[0], -1)))


def test_scan_as_method_decorator() -> None:
    model = MethodScan(nnx.Rngs(1))
    x = RNG.uniform(size=(3, 2, 2, 3)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(2, 2, 3))
    per_block = [f"stack.{i}.{name}" for i in range(4) for name in ("norm", "fc")]
    assert probe.layer_names == (*per_block, "stack", "head")
    params = plain_params(model)
    h = jnp.asarray(x.reshape(3, -1))
    acts = probe.activations(x)
    for i in range(4):
        p = jax.tree.map(lambda a, i=i: a[i], params["stack"])
        fc = dense(layer_norm(h, p["norm"], model.stack.norm.epsilon), p["fc"])
        np.testing.assert_allclose(acts[f"stack.{i}.fc"], fc, rtol=1e-4, atol=1e-5)
        h = h + jnp.tanh(fc)
    np.testing.assert_allclose(acts["stack"], h, rtol=1e-4, atol=1e-5)
    assert sum(row["n_params"] for row in probe.summary()) == param_count(model)


# ------------------------------------------------------------------ containers


class Stage(nnx.Module):
    """A custom container: a list of convs run in turn."""

    def __init__(self, channels: int, n: int, rngs: nnx.Rngs) -> None:
        self.convs = nnx.List([nnx.Conv(channels, channels, (3, 3), rngs=rngs) for _ in range(n)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jnp.tanh(conv(x))
        return x


class Heads(nnx.Module):
    """Holds modules but is never called itself."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.left = nnx.Linear(4, 3, rngs=rngs)
        self.right = nnx.Linear(4, 3, rngs=rngs)


class Containers(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.stem = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.stages = nnx.data({"low": Stage(4, 2, rngs), "high": Stage(4, 1, rngs)})
        self.pair = nnx.data((nnx.Linear(4, 4, rngs=rngs), nnx.Linear(4, 4, rngs=rngs)))
        self.seq = nnx.Sequential(nnx.Linear(4, 4, rngs=rngs), nnx.relu)
        self.heads = Heads(rngs)
        self.unused = nnx.Linear(4, 7, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.stages["high"](self.stages["low"](jnp.tanh(self.stem(x))))
        h = x.mean(axis=(1, 2))
        h = self.seq(self.pair[1](self.pair[0](h)))
        return self.heads.left(h) - self.heads.right(h)


def conv3x3(x: jax.Array, p: dict) -> jax.Array:
    pad = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    windows = jnp.stack(
        [pad[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], axis=3
    )  # (N, H, W, 9, C)
    return jnp.einsum("nhwkc,kco->nhwo", windows, p["kernel"].reshape(9, *p["kernel"].shape[2:]))


def test_modules_in_any_container() -> None:
    model = Containers(nnx.Rngs(2))
    x = RNG.uniform(size=(2, 6, 6, 3)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(6, 6, 3))
    assert probe.layer_names == (
        "stem",
        "stages.low.convs.0",
        "stages.low.convs.1",
        "stages.low",
        "stages.high.convs.0",
        "stages.high",
        "pair.0",
        "pair.1",
        "seq.layers.0",
        "seq",
        "heads.left",
        "heads.right",
    )
    p = plain_params(model)
    ref = {"stem": conv3x3(jnp.asarray(x), p["stem"]) + p["stem"]["bias"]}
    h = jnp.tanh(ref["stem"])
    for stage, n in (("low", 2), ("high", 1)):
        for i in range(n):
            conv = p["stages"][stage]["convs"][i]
            h = ref[f"stages.{stage}.convs.{i}"] = conv3x3(h, conv) + conv["bias"]
            h = jnp.tanh(h)
        ref[f"stages.{stage}"] = h
    v = ref["pair.0"] = dense(h.mean(axis=(1, 2)), p["pair"][0])
    v = ref["pair.1"] = dense(v, p["pair"][1])
    v = ref["seq.layers.0"] = dense(v, p["seq"]["layers"][0])
    ref["seq"] = v = jnp.maximum(v, 0)
    ref["heads.left"] = dense(v, p["heads"]["left"])
    acts = probe.activations(x)
    for name, expected in ref.items():
        np.testing.assert_allclose(acts[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)
    # Own parameters per row; the module never called is in the "(other)" row.
    rows = {row["name"]: row for row in probe.summary()}
    assert rows["stages.low"]["n_params"] == 0
    assert rows["stages.low"]["total_params"] == 2 * (3 * 3 * 4 * 4 + 4)
    assert rows["stages.low.convs.1"]["depth"] == 1
    assert rows["(other)"]["n_params"] == 4 * 7 + 7
    assert sum(row["n_params"] for row in rows.values()) == param_count(model)


# ------------------------------------------------------------------ BatchNorm in training mode


class BNNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=False, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.drop(nnx.relu(self.bn(self.conv(x))))
        return self.head(h.mean(axis=(1, 2)))


def test_batchnorm_in_training_mode_uses_running_statistics() -> None:
    model = BNNet(nnx.Rngs(3))
    x = RNG.uniform(size=(4, 6, 6, 3)).astype(np.float32)
    model(x)  # one training step's statistics, so the running averages are not the init
    before = snapshot(model)
    probe = jv.Probe(model, input_shape=(6, 6, 3))
    twin = nnx.clone(model)
    twin.eval()
    np.testing.assert_allclose(probe(x), twin(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probe(x), probe(x))
    mean, var = model.bn.mean[...], model.bn.var[...]
    bn = (np.asarray(probe.activations(x, "conv")["conv"]) - mean) / np.sqrt(var + 1e-5)
    expected = bn * model.bn.scale[...] + model.bn.bias[...]
    np.testing.assert_allclose(probe.activations(x, "bn")["bn"], expected, rtol=1e-4, atol=1e-5)
    jax.grad(lambda x: probe.apply(probe.params, x)[0].sum())(jnp.asarray(x))
    after = snapshot(model)
    assert before[1] == after[1] == [(("bn",), False), (("drop",), False)]
    for a, b in zip(before[0], after[0], strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ Linen parameter counts


class LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x + nn.Dense(4, name="fc2")(nn.relu(nn.Dense(6, name="fc1")(x)))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(4, (3, 3), name="stem")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        for i in range(2):
            x = LinenBlock(name=f"block{i}")(x)
        return nn.Dense(3, name="head")(x.mean(axis=(1, 2)))


def test_linen_parameters_counted_once() -> None:
    module = LinenNet()
    variables = module.init(jax.random.key(0), jnp.zeros((1, 6, 6, 2)))
    probe = jv.Probe(module, variables, input_shape=(6, 6, 2))
    block = (4 * 6 + 6) + (6 * 4 + 4)
    hand = (3 * 3 * 2 * 4 + 4) + 2 * 4 + 2 * block + (4 * 3 + 3)
    assert hand == sum(x.size for x in jax.tree.leaves(variables["params"])) == probe.n_params
    rows = {row["name"]: row for row in probe.summary()}
    assert sum(row["n_params"] for row in rows.values()) == hand
    assert rows["block0"]["n_params"] == 0 and rows["block0"]["total_params"] == block
    assert rows["block0.fc1"]["n_params"] == 4 * 6 + 6 and rows["block0.fc1"]["depth"] == 1
    assert "(other)" not in rows


# ------------------------------------------------------------------ two probes at once


class Rendezvous(nnx.Module):
    """Holds each tracing thread until the other arrives, so both trace at the same time."""

    barrier = threading.Barrier(2)

    def __call__(self, x: jax.Array) -> jax.Array:
        try:
            self.barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        return x


class Left(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.left_conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.wait = Rendezvous()
        self.left_head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.left_head(self.wait(self.left_conv(x)).mean(axis=(1, 2)))


class Right(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.right_conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.wait = Rendezvous()

        @nnx.split_rngs(splits=2)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(rngs: nnx.Rngs) -> nnx.Linear:
            return nnx.Linear(4, 4, rngs=rngs)

        self.right_stack = create(rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.wait(self.right_conv(x)).mean(axis=(1, 2))
        return nnx.scan(lambda h, lin: lin(h), in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)(
            h, self.right_stack
        )


def test_two_probes_traced_at_once_in_two_threads_see_only_their_layers() -> None:
    from flax.nnx.transforms import iteration

    x = RNG.uniform(size=(2, 6, 6, 3)).astype(np.float32)
    library_calls = (nnx.Conv.__call__, nnx.Linear.__call__, Rendezvous.__call__)
    probes = {
        "left": jv.Probe(Left(nnx.Rngs(0)), input_shape=(6, 6, 3)),
        "right": jv.Probe(Right(nnx.Rngs(1)), input_shape=(6, 6, 3)),
    }
    found: dict[str, tuple] = {}
    errors: list[BaseException] = []

    def work(key: str) -> None:
        try:
            found[key] = (probes[key].layer_names, set(probes[key].activations(x)))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(key,)) for key in probes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not Rendezvous.barrier.broken  # the two traces did overlap
    assert found["left"][0] == ("left_conv", "wait", "left_head")
    assert found["right"][0] == ("right_conv", "wait", "right_stack.0", "right_stack.1")
    assert found["left"][1] == set(found["left"][0])
    assert found["right"][1] == set(found["right"][0])
    assert iteration.jax is jax  # flax's scan is its own again
    assert (nnx.Conv.__call__, nnx.Linear.__call__, Rendezvous.__call__) == library_calls


# ------------------------------------------------------------------ nested and other transforms


class Inner(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.fc = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(self.fc(x))


def stacked(n: int, make: type, rngs: nnx.Rngs) -> nnx.Module:
    @nnx.split_rngs(splits=n)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(rngs: nnx.Rngs) -> nnx.Module:
        return make(rngs)

    return create(rngs)


def run_stack(x: jax.Array, stack: nnx.Module, reverse: bool = False) -> jax.Array:
    scan = nnx.scan(lambda h, m: m(h), in_axes=(nnx.Carry, 0), out_axes=nnx.Carry, reverse=reverse)
    return scan(x, stack)


class Outer(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.proj = nnx.Linear(4, 4, rngs=rngs)
        self.inner = stacked(2, Inner, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return run_stack(self.proj(x), self.inner)


class Nested(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.blocks = stacked(3, Outer, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return run_stack(x.reshape(x.shape[0], -1), self.blocks, reverse=True)


def test_scan_inside_scan_and_reverse() -> None:
    model = Nested(nnx.Rngs(4))
    x = RNG.uniform(size=(2, 2, 2, 1)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(2, 2, 1))
    block = ["proj", "inner.0.fc", "inner.0", "inner.1.fc", "inner.1"]
    expected: list[str] = []
    for i in (2, 1, 0):  # reverse=True runs the last block first
        expected += [f"blocks.{i}.{name}" for name in block] + [f"blocks.{i}"]
    assert probe.layer_names == tuple(expected)
    p = plain_params(model)["blocks"]
    h = jnp.asarray(x.reshape(2, -1))
    acts = probe.activations(x)
    for i in (2, 1, 0):
        h = dense(h, jax.tree.map(lambda a, i=i: a[i], p["proj"]))
        for j in range(2):
            h = jnp.tanh(dense(h, jax.tree.map(lambda a, i=i, j=j: a[i, j], p["inner"]["fc"])))
            np.testing.assert_allclose(acts[f"blocks.{i}.inner.{j}"], h, rtol=1e-4, atol=1e-5)
    assert probe.layer("blocks.0.inner.1.fc").n_params == 4 * 4 + 4
    assert probe.n_params == param_count(model)


class Ensemble(nnx.Module):
    """Members run under ``nnx.vmap`` and a block under ``nnx.remat``: inner traces."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.stem = nnx.Linear(8, 4, rngs=rngs)
        self.members = stacked(3, Inner, rngs)
        self.heavy = Inner(rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.stem(x.reshape(x.shape[0], -1))
        h = nnx.vmap(lambda m, h: m(h), in_axes=(0, None))(self.members, h).mean(0)
        return nnx.remat(lambda m, h: m(h))(self.heavy, h)


def test_modules_inside_other_transforms_are_skipped_not_leaked(monkeypatch) -> None:
    from jaxvis import _capture

    model = Ensemble(nnx.Rngs(5))
    x = RNG.uniform(size=(2, 2, 2, 2)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(2, 2, 2))
    assert probe.layer_names == ("stem",)
    np.testing.assert_allclose(probe(x), model(x), rtol=1e-5, atol=1e-6)
    jax.grad(lambda x: probe.apply(probe.params, x)[0].sum())(jnp.asarray(x))
    # A scan too long to loop stays a lax.scan: its blocks are skipped, the output is right.
    monkeypatch.setattr(_capture, "MAX_LOOPED_SCAN", 2)
    nested = Nested(nnx.Rngs(4))
    long = jv.Probe(nested, input_shape=(2, 2, 1))
    assert long.layer_names == ()
    y = x[..., :1]
    np.testing.assert_allclose(long(y), nested(y), rtol=1e-5, atol=1e-6)


class SharedInScan(nnx.Module):
    """A scan step that also calls a closed-over module and a broadcast (``in_axes=None``) one."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.blocks = stacked(2, Inner, rngs)
        self.shared = nnx.Linear(4, 4, rngs=rngs)
        self.broadcast = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        def step(h: jax.Array, block: Inner, broadcast: nnx.Linear) -> jax.Array:
            return broadcast(self.shared(block(h)))

        scan = nnx.scan(step, in_axes=(nnx.Carry, 0, None), out_axes=nnx.Carry)
        return scan(x.reshape(x.shape[0], -1), self.blocks, self.broadcast)


def test_modules_shared_by_all_scan_steps_keep_their_names() -> None:
    model = SharedInScan(nnx.Rngs(6))
    x = RNG.uniform(size=(2, 2, 2, 1)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(2, 2, 1))
    assert probe.layer_names == (
        "blocks.0.fc",
        "blocks.0",
        "shared",
        "broadcast",
        "blocks.1.fc",
        "blocks.1",
        "shared@2",
        "broadcast@2",
    )
    p = plain_params(model)
    h = jnp.asarray(x.reshape(2, -1))
    for i in range(2):
        h = jnp.tanh(dense(h, jax.tree.map(lambda a, i=i: a[i], p["blocks"]["fc"])))
        h = dense(dense(h, p["shared"]), p["broadcast"])
    np.testing.assert_allclose(probe(x), h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probe.activations(x, "broadcast@2")["broadcast@2"], h, rtol=1e-4)
    assert probe.layer("shared").n_params == 20 and probe.layer("shared@2").n_params == 0
    assert sum(layer.n_params for layer in probe.layers) == param_count(model)


class Refine(nnx.Module):
    """One weight-shared block applied three times with ``nnx.fori_loop``."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.block = Inner(rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        return nnx.fori_loop(
            0, 3, lambda i, state: (state[0], state[0](state[1])), (self.block, h)
        )[1]


def test_fori_loop_calls_are_layers() -> None:
    model = Refine(nnx.Rngs(7))
    x = RNG.uniform(size=(2, 2, 2, 1)).astype(np.float32)
    probe = jv.Probe(model, input_shape=(2, 2, 1))
    assert probe.layer_names == (
        "block.fc",
        "block",
        "block.fc@2",
        "block@2",
        "block.fc@3",
        "block@3",
    )
    p = plain_params(model)["block"]["fc"]
    h = jnp.asarray(x.reshape(2, -1))
    acts = probe.activations(x)
    for name in ("block", "block@2", "block@3"):
        h = jnp.tanh(dense(h, p))
        np.testing.assert_allclose(acts[name], h, rtol=1e-4, atol=1e-5)
    assert [layer.n_params for layer in probe.layers] == [20, 0, 0, 0, 0, 0]


def test_module_of_locates_parameters_of_stacked_blocks(vit_probe: jv.Probe) -> None:
    assert vit_probe.module_of("blocks.2.attn.query") == ("blocks.attn.query", (2,))
    assert vit_probe.module_of("head") == ("head", ())
    with pytest.raises(ValueError, match="did you mean 'blocks.2.attn'"):
        vit_probe.module_of("blocks.2.atn")


def test_scans_loop_only_when_a_wanted_layer_is_inside(vit_probe: jv.Probe) -> None:
    def program(layers: tuple[str, ...] | None) -> str:
        fn = lambda x: vit_probe.apply(vit_probe.params, x, layers, truncate=False)  # noqa: E731
        return str(jax.make_jaxpr(fn)(X))

    assert "scan[" in program(())  # logits only: the model's own compiled scan
    _ = vit_probe.layers  # which layers lie inside the scan is known once layers are listed
    assert "scan[" in program(("patch_embed", "head"))
    assert "scan[" not in program(("blocks.1.attn",))
    assert "scan[" not in program(None)
