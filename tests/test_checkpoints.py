"""jv.zoo's reference ResNets and ViTs load PyTorch, safetensors and .npz checkpoints and give
the logits of the PyTorch models (twins in tests/_torch_twins.py) on the same weights."""

from __future__ import annotations

import sys

import jax
import numpy as np
import pytest

import jaxvis as jv

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import _torch_twins as twins  # noqa: E402

SMALL_VIT = dict(image_size=32, patch_size=8, width=64, depth=2, num_heads=4, mlp_dim=128)


def _twin_vit(seed: int, eps: float = 1e-6, gelu: str = "none") -> torch.nn.Module:
    c = SMALL_VIT
    model = twins.VisionTransformer(
        c["image_size"],
        c["patch_size"],
        c["width"],
        c["depth"],
        c["num_heads"],
        c["mlp_dim"],
        10,
        eps=eps,
        gelu=gelu,
    )
    return twins.randomise(model, seed)


def _images(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, side, side, 3)).astype(np.float32)


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def _assert_same_logits(ours: jax.Array, theirs: np.ndarray, label: str) -> None:
    ours = np.asarray(ours)
    size = float(np.abs(theirs).max())
    scale = max(1.0, size)
    diff = float(np.abs(ours - theirs).max())
    print(f"{label}: max |logit diff| {diff:.2e} (max |logit| {size:.3g})")
    assert ours.shape == theirs.shape
    assert diff <= 1e-4 * scale, f"{label}: max |diff| {diff} at logit scale {scale}"


def _save(state: dict, tmp_path, name: str) -> tuple:
    st = tmp_path / f"{name}.safetensors"
    pth = tmp_path / f"{name}.pth"
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, st)
    torch.save(state, pth)
    return st, pth


def _same_trees(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _flat_npz(variables: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    return {prefix + "/".join(k.key for k in path): np.asarray(v) for path, v in flat}


# ------------------------------------------------------------------------------ ResNet


def test_resnet18_from_torchvision_state_dict(tmp_path):
    twin = twins.randomise(twins.ResNet("basic", [2, 2, 2, 2], num_classes=10), seed=1)
    st, pth = _save(twin.state_dict(), tmp_path, "resnet18")
    module, variables = jv.zoo.load_checkpoint(st, "resnet18")
    assert module.num_classes == 10 and module.block == "basic"
    _same_trees(variables, jv.zoo.load_checkpoint(pth, "resnet18").variables)
    hf = twins.hf_resnet_state_dict(twin.state_dict())  # Hugging Face's names, same function
    assert "resnet.encoder.stages.1.layers.0.shortcut.normalization.running_var" in hf
    _same_trees(variables, jv.zoo.load_checkpoint(hf, "resnet18").variables)
    # running statistics became batch_stats; num_batches_tracked was dropped
    assert set(variables) == {"params", "batch_stats"}
    np.testing.assert_array_equal(
        variables["batch_stats"]["layer2_0"]["downsample_bn"]["var"],
        twin.layer2[0].downsample[1].running_var.numpy(),
    )
    x = _images(2, 64)
    _assert_same_logits(jax.jit(module.apply)(variables, x), _torch_logits(twin, x), "resnet18")


def test_bottleneck_resnet_and_its_probe(tmp_path):
    twin = twins.randomise(twins.ResNet("bottleneck", [1, 1, 1, 1], num_classes=10), seed=2)
    st, _ = _save(twin.state_dict(), tmp_path, "bottleneck")
    arch = jv.zoo.ResNet((1, 1, 1, 1), "bottleneck", num_classes=10)
    module, variables = jv.zoo.load_checkpoint(st, arch)
    assert module is arch
    hf = twins.hf_resnet_state_dict(twin.state_dict())
    assert "resnet.encoder.stages.3.layers.0.layer.2.convolution.weight" in hf
    _same_trees(variables, jv.zoo.load_checkpoint(hf, arch).variables)
    x = _images(2, 64, seed=1)
    probe = jv.Probe(module, variables, input_shape=(64, 64, 3))
    names = probe.layer_names
    assert {"conv1", "bn1", "layer2_0.conv2", "layer2_0.downsample_conv", "layer4_0", "fc"} <= set(
        names
    )
    _assert_same_logits(probe(x), _torch_logits(twin, x), "resnet bottleneck 1-1-1-1")


def test_init_variables_estimates_batchnorm_statistics():
    """The running statistics are those of the estimation batch: on it, eval mode gives the
    training-mode output exactly; the defaults draw random images for it."""
    module = jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=10)
    images = _images(4, 32, seed=5) * 3 + 1
    variables = jv.zoo.init_variables(module, seed=0, images=images)
    train, _ = module.apply(variables, images, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(module.apply(variables, images), train, rtol=1e-4, atol=1e-5)
    stats = variables["batch_stats"]["layer2_0"]["bn2"]
    assert np.abs(np.asarray(stats["mean"])).max() > 0 and not np.allclose(stats["var"], 1)
    default = jv.zoo.init_variables(module, seed=0, input_shape=(32, 32, 3))
    assert not np.allclose(default["batch_stats"]["bn1"]["mean"], 0)
    _same_trees(default["params"], variables["params"])  # the seed draws the same weights


# ------------------------------------------------------------------------------ ViT


def test_vit_from_timm_state_dict(tmp_path):
    twin = _twin_vit(seed=3)
    st, pth = _save(twin.state_dict(), tmp_path, "vit")
    arch = jv.zoo.VisionTransformer(num_classes=10, **SMALL_VIT)
    module, variables = jv.zoo.load_checkpoint(st, arch)
    _same_trees(variables, jv.zoo.load_checkpoint(pth, arch).variables)
    x = _images(2, 32, seed=2)
    _assert_same_logits(jax.jit(module.apply)(variables, x), _torch_logits(twin, x), "vit timm")
    probe = jv.Probe(module, variables, input_shape=(32, 32, 3))
    attention = [layer for layer in probe.layers if layer.kind == "MultiHeadDotProductAttention"]
    assert [a.name for a in attention] == [
        f"Transformer.encoderblock_{i}.MultiHeadDotProductAttention_1" for i in range(2)
    ]


def test_vit_from_hugging_face_state_dict(tmp_path):
    twin = _twin_vit(seed=4, eps=1e-12)  # HF's ViT: timm's function, LayerNorm eps 1e-12
    hf = twins.hf_state_dict(twin.state_dict())
    assert "vit.encoder.layer.1.attention.attention.value.weight" in hf
    st, _ = _save(hf, tmp_path, "vit_hf")
    arch = jv.zoo.VisionTransformer(num_classes=10, layer_norm_eps=1e-12, **SMALL_VIT)
    module, variables = jv.zoo.load_checkpoint(st, arch)
    x = _images(2, 32, seed=3)
    _assert_same_logits(jax.jit(module.apply)(variables, x), _torch_logits(twin, x), "vit hf")


def _big_vision(flat: dict[str, np.ndarray], stacked: bool) -> dict[str, np.ndarray]:
    """vision_transformer keys -> big_vision's: block modules renumbered, the position
    embedding at the top without the class token's entry, blocks optionally scan-stacked."""
    renames = {
        "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
        "LayerNorm_2": "LayerNorm_1",
        "MlpBlock_3": "MlpBlock_0",
    }
    out, blocks = {}, {}
    for key, value in flat.items():
        parts = key.split("/")
        if key == "Transformer/posembed_input/pos_embedding":
            assert not value[:, 0].any()
            out["pos_embedding"] = value[:, 1:]
        elif len(parts) > 2 and parts[1].startswith("encoderblock_"):
            parts[2] = renames.get(parts[2], parts[2])
            if stacked:
                blocks.setdefault("/".join(parts[2:]), []).append(value)
            else:
                out["/".join(parts)] = value
        else:
            out[key] = value
    out.update({f"Transformer/encoderblock/{k}": np.stack(v) for k, v in blocks.items()})
    return out


def test_vit_from_npz_vision_transformer_and_big_vision(tmp_path):
    twin = _twin_vit(seed=5, gelu="tanh")  # the Flax code bases use nn.gelu's tanh form
    with torch.no_grad():
        twin.pos_embed[:, 0] = 0  # big_vision gives the class token no position embedding
    arch = jv.zoo.VisionTransformer(num_classes=10, approximate_gelu=True, **SMALL_VIT)
    _, variables = jv.zoo.load_checkpoint(twin.state_dict(), arch)
    flat = _flat_npz(variables)
    files = {
        "vision_transformer": flat,
        "params/ prefix": {f"params/{k}": v for k, v in flat.items()},
        "big_vision": _big_vision(flat, stacked=False),
        "big_vision scan": _big_vision(flat, stacked=True),
        "big_vision 2021": {
            **{k: v for k, v in _big_vision(flat, stacked=False).items() if k != "pos_embedding"},
            "Transformer/pos_embedding": flat["Transformer/posembed_input/pos_embedding"],
        },
    }
    assert (
        "Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel"
        in files["big_vision scan"]
    )
    apply = jax.jit(arch.apply)
    x = _images(2, 32, seed=4)
    expected = _torch_logits(twin, x)
    for i, (label, arrays) in enumerate(files.items()):
        path = tmp_path / f"vit{i}.npz"
        np.savez(path, **arrays)
        module, loaded = jv.zoo.load_checkpoint(path, arch)
        _same_trees(loaded, variables)
        _assert_same_logits(apply(loaded, x), expected, f"vit npz {label}")


def test_named_architectures_read_their_size_off_the_checkpoint(tmp_path):
    """``arch="vit_ti16"``: image size from the position embeddings, classes from the head,
    LayerNorm epsilon and GELU from the layout."""
    twin = twins.randomise(twins.VisionTransformer(32, 16, 192, 12, 3, 768, 7), seed=6)
    state = twin.state_dict()
    module, variables = jv.zoo.load_checkpoint(state, "vit_ti16")
    assert (module.image_size, module.num_classes, module.depth, module.width) == (32, 7, 12, 192)
    assert (module.layer_norm_eps, module.approximate_gelu) == (1e-6, False)
    x = _images(2, 32, seed=6)
    _assert_same_logits(jax.jit(module.apply)(variables, x), _torch_logits(twin, x), "vit_ti16")

    hf = jv.zoo.load_checkpoint(twins.hf_state_dict(state), "vit_ti16").module
    assert (hf.layer_norm_eps, hf.approximate_gelu) == (1e-12, False)
    path = tmp_path / "ti.npz"
    np.savez(path, **_flat_npz(variables))
    npz = jv.zoo.load_checkpoint(path, "vit_ti16").module
    assert (npz.image_size, npz.num_classes, npz.approximate_gelu) == (32, 7, True)


def test_own_resnet_variables_round_trip_through_npz(tmp_path):
    module = jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=3)
    variables = jv.zoo.init_variables(module, seed=1, input_shape=(32, 32, 3))
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    np.savez(tmp_path / "own.npz", **{"/".join(k.key for k in p): v for p, v in flat})
    _same_trees(jv.zoo.load_checkpoint(tmp_path / "own.npz", module).variables, variables)


# ------------------------------------------------------------------------------ failures


class _Payload:
    """A custom object: pickling it into a checkpoint means loading it would run code."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(
        ValueError,
        match=r"weights_only=True\): it pickles the object "
        r"test_checkpoints\._Payload\. jaxvis never unpickles",
    ):
        jv.zoo.load_checkpoint(path, "resnet18")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="it is not a plain state_dict"):
        jv.zoo.load_checkpoint(tmp_path / "junk.pth", "resnet18")


def test_training_checkpoints_and_data_parallel_prefixes_are_unwrapped(tmp_path):
    state = _small_resnet_state()
    path = tmp_path / "train.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    arch = jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=4)
    _same_trees(
        jv.zoo.load_checkpoint(path, arch).variables, jv.zoo.load_checkpoint(state, arch).variables
    )


def _small_resnet_state() -> dict:
    return twins.ResNet("basic", [1, 1, 1, 1], num_classes=4).state_dict()


def test_mismatched_keys_are_named():
    state = _small_resnet_state()
    del state["layer3.0.bn1.running_var"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    arch = jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=4)
    with pytest.raises(ValueError) as err:
        jv.zoo.load_checkpoint(state, arch)
    message = str(err.value)
    assert "ResNet(stage_sizes=(1, 1, 1, 1), block='basic') (torchvision layout)" in message
    assert "1 missing: layer3.0.bn1.running_var" in message
    assert "1 unexpected: layer9.0.conv1.weight" in message
    assert "num_batches_tracked" not in message


def test_loading_compiles_nothing(caplog):
    """Keys and shapes are checked, and arrays converted, without compiling any program."""
    state = _small_resnet_state()
    arch = jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=4)
    with caplog.at_level("WARNING", logger="jax"), jax.log_compiles(True):
        jv.zoo.load_checkpoint(state, arch)
        del state["fc.bias"]
        with pytest.raises(ValueError, match="missing: fc.bias"):
            jv.zoo.load_checkpoint(state, arch)
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]


def test_mismatched_shapes_give_both_shapes():
    state = _small_resnet_state()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    with pytest.raises(
        ValueError,
        match=r"conv1\.weight: checkpoint \(64, 1, 7, 7\), model "
        r"expects \(64, 3, 7, 7\)",
    ):
        jv.zoo.load_checkpoint(state, jv.zoo.ResNet((1, 1, 1, 1), "basic", num_classes=4))


def test_wrong_architecture_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"arch must be one of .*did you mean resnet50"):
        jv.zoo.load_checkpoint(_small_resnet_state(), "resnet5O")
    with pytest.raises(TypeError, match="arch must be an architecture name"):
        jv.zoo.load_checkpoint(_small_resnet_state(), object())
    with pytest.raises(TypeError, match="instance, got the class ResNet"):
        jv.zoo.load_checkpoint(_small_resnet_state(), jv.zoo.ResNet)
    vit_state = _twin_vit(seed=7).state_dict()
    with pytest.raises(
        ValueError,
        match=r"looks like VisionTransformer\(width=64, depth=2\)(.|\n)*missing: conv1\.weight",
    ):
        jv.zoo.load_checkpoint(vit_state, "resnet18")
    with pytest.raises(
        ValueError,
        match=r"looks like ResNet\(stage_sizes=\(1, 1, 1, 1\)(.|\n)*unexpected: conv1\.weight",
    ):
        jv.zoo.load_checkpoint(_small_resnet_state(), "vit_s16")
    (tmp_path / "weights.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"unknown checkpoint type '\.ckpt'"):
        jv.zoo.load_checkpoint(tmp_path / "weights.ckpt", "resnet18")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        jv.zoo.load_checkpoint(tmp_path / "absent.safetensors", "resnet18")


def test_pytorch_files_without_torch_say_so(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save(_small_resnet_state(), path)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"needs torch .*or save it as \.safetensors"):
        jv.zoo.load_checkpoint(path, "resnet18")


# ------------------------------------------------------------------------------ full size


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "vit_b16"])
def test_full_size_models_at_224(tmp_path, name):
    if name == "resnet50":
        twin = twins.ResNet("bottleneck", [3, 4, 6, 3], num_classes=1000)
    else:
        twin = twins.VisionTransformer(224, 16, 768, 12, 12, 3072, 1000)
    twin = twins.randomise(twin, seed=8)
    st, _ = _save(twin.state_dict(), tmp_path, name)
    module, variables = jv.zoo.load_checkpoint(st, name)
    n_params = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n_params == sum(p.numel() for p in twin.parameters())
    x = _images(2, 224, seed=8)
    _assert_same_logits(jax.jit(module.apply)(variables, x), _torch_logits(twin, x), name)
