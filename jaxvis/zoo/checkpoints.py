"""Load the weights people already have into ``jv.zoo``'s ResNets and ViTs.

One entry point, :func:`load_checkpoint`, reads a file (or a dict of arrays), recognises its
key layout, checks every key and shape against the architecture before anything compiles, and
returns ``(module, variables)`` ready for ``jv.Probe``. Nothing is ever unpickled: PyTorch
files go through ``torch.load(weights_only=True)``, safetensors and ``.npz`` files hold arrays
only.

Layouts understood:

* ResNet, PyTorch ``state_dict`` (``.safetensors``, ``.pt``, ``.pth``, ``.bin``): torchvision's
  key names, which timm's ``resnet*`` share (``conv1.weight``, ``bn1.running_mean``,
  ``layer1.0.downsample.0.weight``, ``fc.weight``; ``num_batches_tracked`` is dropped), or
  Hugging Face ``ResNetForImageClassification`` (``resnet.embedder.embedder.convolution.weight``,
  ``resnet.encoder.stages.0.layers.0.shortcut.normalization.running_mean``,
  ``classifier.1.weight``).
* ViT, PyTorch ``state_dict``: timm (``cls_token``, ``pos_embed``, ``blocks.0.attn.qkv.weight``,
  ``head.weight``) or Hugging Face ``ViTForImageClassification`` (``vit.embeddings.cls_token``,
  ``vit.encoder.layer.0.attention.attention.query.weight``, ``classifier.weight``).
* ViT, ``.npz``: google-research/vision_transformer (``Transformer/encoderblock_0/
  MultiHeadDotProductAttention_1/query/kernel``, ``Transformer/posembed_input/pos_embedding``)
  and big_vision (``MultiHeadDotProductAttention_0``, top-level ``pos_embedding`` without the
  class token's, or blocks stacked by ``nn.scan`` under ``Transformer/encoderblock``), with or
  without a ``params/`` or ``opt/target/`` prefix.
* Either family, ``.npz`` of jaxvis's own variables flattened with ``/``
  (``params/conv1/kernel``, ``batch_stats/bn1/mean``).

Inputs are NHWC images normalised as the checkpoint was trained: torchvision's and most of
timm's ImageNet models take ``(x - mean) / std`` with mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225); vision_transformer, big_vision and Hugging Face ViTs take ``[-1, 1]``.

Example::

    module, variables = jv.zoo.load_checkpoint("resnet50.safetensors", "resnet50")
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3))
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxvis.zoo.architectures import ARCHITECTURES, ResNet, VisionTransformer, architecture

__all__ = ["LoadedCheckpoint", "load_checkpoint"]

_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_SHOWN = 8  # keys listed per kind of mismatch


class LoadedCheckpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: ``jv.Probe(*loaded)`` works."""

    module: nn.Module
    variables: dict[str, Any]


class _Source(NamedTuple):
    """Where one Flax leaf comes from: a checkpoint key, the shape it must have there, and
    the conversion to the Flax layout."""

    key: str
    shape: tuple[int, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def load_checkpoint(
    source: str | os.PathLike | Mapping[str, Any], arch: str | nn.Module
) -> LoadedCheckpoint:
    """Load a ResNet or ViT checkpoint into a ``jv.zoo`` architecture.

    Args:
        source: a ``.safetensors``, ``.pt``/``.pth``/``.bin`` (a PyTorch ``state_dict``,
            possibly under ``"state_dict"`` or ``"model"``) or ``.npz`` file; or a mapping of
            key to array (numpy or torch).
        arch: a name in ``jv.zoo.ARCHITECTURES`` (``"resnet50"``, ``"vit_s16"``, ...), whose
            ``num_classes`` and ViT ``image_size`` are read off the checkpoint, and whose
            LayerNorm epsilon and GELU follow the layout (1e-12 for Hugging Face; the tanh
            GELU for ``.npz`` files, as the Flax code bases that write them); or a
            :class:`~jaxvis.zoo.ResNet` / :class:`~jaxvis.zoo.VisionTransformer` instance,
            used as it is.

    Returns:
        ``LoadedCheckpoint(module, variables)``; ``module.apply(variables, x)`` gives logits.

    Raises:
        ValueError: unknown ``arch``, an unknown file type, a file holding anything but tensors,
            keys that do not match (the first missing and unexpected ones are listed), or
            shapes that do not (both shapes are given).

    Example::

        module, variables = jv.zoo.load_checkpoint("vit_b16.npz", "vit_b16")
        logits = module.apply(variables, images)   # images: (N, 224, 224, 3)
    """
    tensors = _read(source)
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    family = _family(arch)
    layout = _layout(tensors, family)
    if layout in ("vision_transformer", "big_vision", "jaxvis"):
        tensors = _normalise_npz(tensors, layout)
    module = arch if isinstance(arch, nn.Module) else _build(arch, family, layout, tensors)
    sources = _sources(module, layout)
    _check_keys(tensors, sources, layout, module)
    flat = {}
    mismatched = []
    for path, (src, expected) in sources.items():
        array = tensors[src.key]
        if tuple(array.shape) != src.shape:
            if any(line.startswith(f"{src.key}:") for line in mismatched):
                continue  # timm's qkv feeds query, key and value
            mismatched.append(
                f"{src.key}: checkpoint {tuple(array.shape)}, model expects {src.shape} "
                f"(Flax {'/'.join(path)} {expected})"
            )
            continue
        flat[path] = src.convert(array)
    if mismatched:
        raise ValueError(
            f"checkpoint shapes do not match {_describe(module)} ({layout} layout)"
            f"{_hint(tensors, module)}: {len(mismatched)} mismatched:\n  "
            + "\n  ".join(mismatched[:_SHOWN])
        )
    return LoadedCheckpoint(module, _unflatten(flat))


# ----------------------------------------------------------------------------- reading


def _read(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, np.ndarray]:
    if isinstance(source, Mapping):
        return {str(k): _to_numpy(v, str(k)) for k, v in source.items()}
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            f"source must be a file path or a mapping of arrays, got {type(source).__name__}"
        )
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ValueError(f"source: no such checkpoint file {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        return {k: _to_numpy(v, k) for k, v in load_file(path).items()}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: _to_numpy(npz[k], k) for k in npz.files}
    if suffix in _TORCH_SUFFIXES:
        return _read_torch(path)
    raise ValueError(
        f"source: unknown checkpoint type {suffix!r} ({path}); expected .safetensors, "
        f"{', '.join(_TORCH_SUFFIXES)} or .npz"
    )


def _read_torch(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading the PyTorch file {path} needs torch (pip install torch; the CPU build "
            "will do), or save it as .safetensors"
        ) from None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises UnpicklingError for refused pickles and junk alike
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it pickles the object {found[1]}" if found else "it is not a plain state_dict"
        raise ValueError(
            f"{path} cannot be read by torch.load(weights_only=True): {what}. jaxvis never "
            "unpickles code; save model.state_dict() (or a .safetensors file) instead."
        ) from None
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    return {str(k): _to_numpy(v, str(k)) for k, v in obj.items()}


def _to_numpy(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; bfloat16 has no numpy twin
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"checkpoint entry {key!r} is a {type(value).__name__}, not an array"
        ) from None
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind in "iub":
        return array
    raise ValueError(f"checkpoint entry {key!r} has dtype {array.dtype}, not a number")


# ----------------------------------------------------------------------------- layouts


def _family(arch: str | nn.Module) -> str:
    if isinstance(arch, ResNet):
        return "resnet"
    if isinstance(arch, VisionTransformer):
        return "vit"
    if isinstance(arch, str):
        architecture(arch)  # raises for unknown names, with suggestions
        return "resnet" if arch.startswith("resnet") else "vit"
    got = f"the class {arch.__name__}" if isinstance(arch, type) else type(arch).__name__
    raise TypeError(
        "arch must be an architecture name (jv.zoo.ARCHITECTURES) or a jv.zoo.ResNet / "
        f"jv.zoo.VisionTransformer instance, got {got}"
    )


def _layout(tensors: Mapping[str, np.ndarray], family: str) -> str:
    keys = set(tensors)
    if any("/" in k for k in keys):  # a Flax tree flattened with "/"
        if family == "resnet":
            return "jaxvis"
        big_vision = any(
            k.split("/")[-1] == "pos_embedding" and "posembed_input" not in k for k in keys
        ) or any("MultiHeadDotProductAttention_0" in k or "encoderblock/" in k for k in keys)
        return "big_vision" if big_vision else "vision_transformer"
    if any(k.startswith(("vit.", "resnet.")) for k in keys):
        return "huggingface"
    return "torchvision" if family == "resnet" else "timm"


def _normalise_npz(tensors: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """Keys as jaxvis's flattened variables (``params/...``); big_vision's ViT keys renamed to
    vision_transformer's (blocks unstacked, module numbers, the position embedding's place)."""
    out: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if key.startswith("opt/target/"):
            key = "params/" + key[len("opt/target/") :]
        elif not key.startswith(("params/", "batch_stats/")):
            key = "params/" + key
        out[key] = value
    if layout != "big_vision":
        return out
    stacked = "params/Transformer/encoderblock/"
    for key in [k for k in out if k.startswith(stacked)]:  # nn.scan: blocks on axis 0
        value = out.pop(key)
        for i, block in enumerate(value):
            out[f"params/Transformer/encoderblock_{i}/{key[len(stacked) :]}"] = block
    renames = {
        "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
        "LayerNorm_1": "LayerNorm_2",
        "MlpBlock_0": "MlpBlock_3",
    }
    renamed = {}
    for key, value in out.items():
        parts = key.split("/")
        if len(parts) > 3 and parts[2].startswith("encoderblock_"):
            parts[3] = renames.get(parts[3], parts[3])
        renamed["/".join(parts)] = value
    for old in ("params/pos_embedding", "params/Transformer/pos_embedding"):
        if old not in renamed:
            continue
        pos = renamed.pop(old)
        # Since 2022 big_vision adds it before the class token, which gets none.
        if pos.ndim == 3 and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
            pos = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
        renamed["params/Transformer/posembed_input/pos_embedding"] = pos
    return renamed


def _build(name: str, family: str, layout: str, tensors: Mapping[str, np.ndarray]) -> nn.Module:
    """The named architecture with the head width (and ViT image size) of the checkpoint."""
    probe = architecture(name)
    head = _sources_of_leaf(
        probe, layout, ("params", "fc" if family == "resnet" else "head", "bias")
    )
    kwargs: dict[str, Any] = {}
    if head.key in tensors and tensors[head.key].ndim == 1:
        kwargs["num_classes"] = int(tensors[head.key].shape[0])
    if family == "resnet":
        return architecture(name, **kwargs)
    pos = _sources_of_leaf(
        probe, layout, ("params", "Transformer", "posembed_input", "pos_embedding")
    )
    if pos.key in tensors and tensors[pos.key].ndim == 3:
        side = math.isqrt(tensors[pos.key].shape[1] - 1)
        if side**2 + 1 == tensors[pos.key].shape[1]:
            kwargs["image_size"] = side * probe.patch_size
    extra = {
        "layer_norm_eps": 1e-12 if layout == "huggingface" else 1e-6,
        "approximate_gelu": layout in ("vision_transformer", "big_vision"),
    }
    return architecture(name, **kwargs).clone(**extra)


# ----------------------------------------------------------------------------- key maps


def _sources(module: nn.Module, layout: str) -> dict[tuple[str, ...], tuple[_Source, tuple]]:
    """For every leaf of ``module``'s variables, in the order the model creates them (a
    module's statistics after its parameters, as in a ``state_dict``): its source in the
    checkpoint. Shapes come from ``jax.eval_shape``: nothing is allocated or compiled."""
    side = getattr(module, "image_size", 32)
    paths: list[tuple[str, ...]] = []

    def init(key: jax.Array, x: jax.Array) -> list[jax.Array]:
        flat = _flatten(module.init(key, x))  # inside the trace dicts keep creation order
        paths.extend(flat)
        return list(flat.values())

    key = jax.eval_shape(jax.random.key, 0)
    x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    shapes = jax.eval_shape(init, key, x)
    rank = {}
    for path in paths:
        rank.setdefault(path[1:-1], len(rank))
    order = sorted(range(len(paths)), key=lambda i: (rank[paths[i][1:-1]], paths[i][0] != "params"))
    return {
        paths[i]: (_sources_of_leaf(module, layout, paths[i], shapes[i].shape), shapes[i].shape)
        for i in order
    }


def _sources_of_leaf(
    module: nn.Module, layout: str, path: tuple[str, ...], shape: tuple[int, ...] | None = None
) -> _Source:
    if layout in ("jaxvis", "vision_transformer", "big_vision"):
        return _Source("/".join(path), shape or (), _identity)
    if isinstance(module, ResNet):
        name = _resnet_name(path[1:-1], hf=layout == "huggingface")
        return _torch_leaf(name, path[-1], shape)
    return _vit_torch_leaf(layout, path, shape)


_HF_RESNET = {
    "conv1": "layer.0.convolution",
    "bn1": "layer.0.normalization",
    "conv2": "layer.1.convolution",
    "bn2": "layer.1.normalization",
    "conv3": "layer.2.convolution",
    "bn3": "layer.2.normalization",
    "downsample_conv": "shortcut.convolution",
    "downsample_bn": "shortcut.normalization",
}
_HF_RESNET_TOP = {
    "conv1": "resnet.embedder.embedder.convolution",
    "bn1": "resnet.embedder.embedder.normalization",
    "fc": "classifier.1",
}


def _resnet_name(modules: tuple[str, ...], hf: bool) -> str:
    """The PyTorch module of a Flax ResNet module path, e.g. ``("layer1_0", "conv1")``."""
    match = re.fullmatch(r"layer(\d+)_(\d+)", modules[0])
    if match is None:
        return _HF_RESNET_TOP[modules[0]] if hf else modules[0]
    if hf:
        return (
            f"resnet.encoder.stages.{int(match[1]) - 1}.layers.{match[2]}.{_HF_RESNET[modules[1]]}"
        )
    torchvision = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
    return f"layer{match[1]}.{match[2]}.{torchvision.get(modules[1], modules[1])}"


_TORCH_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def _torch_leaf(prefix: str, leaf: str, shape: tuple[int, ...] | None) -> _Source:
    """A Conv, Dense, BatchNorm or LayerNorm leaf from the PyTorch parameter ``prefix.*``."""
    key = f"{prefix}.{_TORCH_LEAF[leaf]}"
    shape = shape or ()
    if leaf == "kernel" and len(shape) == 4:  # HWIO <- OIHW
        return _Source(key, (shape[3], shape[2], shape[0], shape[1]), _conv_kernel)
    if leaf == "kernel":  # (in, out) <- (out, in)
        return _Source(key, tuple(reversed(shape)), _transpose)
    return _Source(key, shape, _identity)


_HF_BLOCK = {
    "LayerNorm_0": "layernorm_before",
    "LayerNorm_2": "layernorm_after",
    "MlpBlock_3/Dense_0": "intermediate.dense",
    "MlpBlock_3/Dense_1": "output.dense",
    "out": "attention.output.dense",
    "query": "attention.attention.query",
    "key": "attention.attention.key",
    "value": "attention.attention.value",
}
_TIMM_BLOCK = {
    "LayerNorm_0": "norm1",
    "LayerNorm_2": "norm2",
    "MlpBlock_3/Dense_0": "mlp.fc1",
    "MlpBlock_3/Dense_1": "mlp.fc2",
    "out": "attn.proj",
}
_VIT_TOP = {  # Flax module path -> (timm, Hugging Face) parameter prefix
    "embedding": ("patch_embed.proj", "vit.embeddings.patch_embeddings.projection"),
    "Transformer/encoder_norm": ("norm", "vit.layernorm"),
    "head": ("head", "classifier"),
}


def _vit_torch_leaf(layout: str, path: tuple[str, ...], shape: tuple[int, ...] | None) -> _Source:
    hf = layout == "huggingface"
    shape = shape or ()
    inner, leaf = "/".join(path[1:-1]), path[-1]
    if leaf == "cls":
        return _Source("vit.embeddings.cls_token" if hf else "cls_token", shape, _identity)
    if leaf == "pos_embedding":
        key = "vit.embeddings.position_embeddings" if hf else "pos_embed"
        return _Source(key, shape, _identity)
    if inner in _VIT_TOP:
        return _torch_leaf(_VIT_TOP[inner][hf], leaf, shape)
    match = re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", inner)
    if match is None:
        raise ValueError(f"no {layout} name for Flax parameter {'/'.join(path)}")
    block, part = match[1], match[2].removeprefix("MultiHeadDotProductAttention_1/")
    prefix = f"vit.encoder.layer.{block}" if hf else f"blocks.{block}"
    if part in ("query", "key", "value") and not hf:  # timm's fused qkv Linear
        return _qkv_leaf(f"{prefix}.attn.qkv", ("query", "key", "value").index(part), leaf, shape)
    name = (_HF_BLOCK if hf else _TIMM_BLOCK)[part]
    if len(shape) == 3 or (part in ("query", "key", "value") and leaf == "bias"):
        return _heads_leaf(f"{prefix}.{name}", part, leaf, shape)
    return _torch_leaf(f"{prefix}.{name}", leaf, shape)


def _heads_leaf(prefix: str, part: str, leaf: str, shape: tuple[int, ...]) -> _Source:
    """Flax's per-head DenseGeneral leaves from a PyTorch Linear over all heads."""
    if part == "out":  # (heads, head_dim, D) <- (D, heads * head_dim)
        heads, dim, width = shape
        return _Source(
            f"{prefix}.weight", (width, heads * dim), lambda w: w.T.reshape(heads, dim, width)
        )
    if leaf == "kernel":  # (D, heads, head_dim) <- (heads * head_dim, D)
        width, heads, dim = shape
        return _Source(
            f"{prefix}.weight", (heads * dim, width), lambda w: w.T.reshape(width, heads, dim)
        )
    return _Source(f"{prefix}.bias", (math.prod(shape),), lambda b: b.reshape(shape))


def _qkv_leaf(prefix: str, index: int, leaf: str, shape: tuple[int, ...]) -> _Source:
    """One of query/key/value from timm's fused ``qkv`` Linear (rows: q, then k, then v)."""
    if leaf == "kernel":
        width, heads, dim = shape
        n = heads * dim
        return _Source(
            f"{prefix}.weight",
            (3 * n, width),
            lambda w: w[index * n : (index + 1) * n].T.reshape(width, heads, dim),
        )
    n = math.prod(shape)
    return _Source(
        f"{prefix}.bias", (3 * n,), lambda b: b[index * n : (index + 1) * n].reshape(shape)
    )


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


def _conv_kernel(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 3, 1, 0)


# ----------------------------------------------------------------------------- checks


def _ignored(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _check_keys(
    tensors: Mapping[str, np.ndarray],
    sources: Mapping[tuple, tuple[_Source, tuple]],
    layout: str,
    module: nn.Module,
) -> None:
    wanted = list(dict.fromkeys(src.key for src, _ in sources.values()))
    missing = [k for k in wanted if k not in tensors]
    used = set(wanted)
    unexpected = [k for k in tensors if k not in used and not _ignored(k)]
    if not missing and not unexpected:
        return
    lines = [
        f"checkpoint keys do not match {_describe(module)} ({layout} layout): "
        f"{len(wanted) - len(missing)} of its {len(wanted)} keys are there{_hint(tensors, module)}"
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
            lines.append(f"  {len(keys)} {label}: {', '.join(keys[:_SHOWN])}{more}")
    raise ValueError("\n".join(lines))


def _looks_like(tensors: Mapping[str, np.ndarray]) -> str | None:
    """The architecture a checkpoint's keys and shapes suggest, for error messages."""
    stages: dict[int, int] = {}
    depth: set[str] = set()
    width = None
    for key, value in tensors.items():
        if match := re.match(r"(?:params/)?layer([1-4])[._](\d+)[./]", key):
            stages[int(match[1])] = max(stages.get(int(match[1]), 0), int(match[2]) + 1)
        if match := re.match(r"resnet\.encoder\.stages\.([0-3])\.layers\.(\d+)\.", key):
            stage = int(match[1]) + 1
            stages[stage] = max(stages.get(stage, 0), int(match[2]) + 1)
        if match := re.search(r"(?:blocks\.|encoder\.layer\.|encoderblock_)(\d+)[./]", key):
            depth.add(match[1])
        if key.split("/")[-1] == "cls" or key.endswith("cls_token"):
            width = value.shape[-1]
        if key.endswith("encoderblock/LayerNorm_0/scale"):  # scan-stacked blocks
            depth = {str(i) for i in range(value.shape[0])}
    if stages:
        third = r"[./]conv3[./]|\.layer\.2\.convolution"
        kind = "bottleneck" if any(re.search(third, k) for k in tensors) else "basic"
        return _describe(ResNet(tuple(stages.get(i, 0) for i in range(1, 5)), kind))
    if width is not None:
        return _describe(VisionTransformer(width=width, depth=len(depth)))
    return None


def _describe(module: nn.Module) -> str:
    """``module`` by its name in :data:`ARCHITECTURES` where its sizes are one's."""
    if isinstance(module, ResNet):
        sizes = (tuple(module.stage_sizes), module.block)
        text = f"ResNet(stage_sizes={sizes[0]}, block={sizes[1]!r})"
        named = [
            n
            for n, f in ARCHITECTURES.items()
            if n.startswith("resnet") and (tuple(f().stage_sizes), f().block) == sizes
        ]
    else:
        sizes = (module.width, module.depth)
        text = f"VisionTransformer(width={sizes[0]}, depth={sizes[1]})"
        named = [
            n
            for n, f in ARCHITECTURES.items()
            if n.startswith("vit") and (f().width, f().depth) == sizes
        ]
    return f"{named[0]} = {text}" if named else text


def _hint(tensors: Mapping[str, np.ndarray], module: nn.Module) -> str:
    guess = _looks_like(tensors)
    return f"; the checkpoint looks like {guess}" if guess and guess != _describe(module) else ""


# ----------------------------------------------------------------------------- trees


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _unflatten(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = jax.device_put(np.ascontiguousarray(value))  # jnp.asarray compiles
    return tree
