"""Shared by the benchmarks that compare jaxvis with PyTorch: PyTorch twins of jaxvis probes.

* :func:`torch_twin` rebuilds a probe's network in PyTorch, layer by layer, with the weights
  copied (kernels HWIO -> OIHW, dense ``(in, out)`` -> ``(out, in)``); the modules carry the
  probe's layer names, so Lucent's hooks find ``"conv5"`` as jaxvis does.
* :class:`VGG128` / :func:`vgg_probe`: a VGG-style 128x128 RGB network (3x3 convolutions
  32-32-pool-64-64-pool-128-128-pool, global average pooling, dense), He-normal kernels.
* :func:`forward_flops`: multiply-adds x 2 of the convolutions and dense layers, per image.
* :func:`import_lucent`: imports ``lucent.optvis`` with a shim for ``torchvision``, which
  torch-lucent imports only for ``transforms.Normalize``.

Example::

    from _torch_nets import torch_twin, vgg_probe
    probe = vgg_probe()
    net = torch_twin(probe)          # nn.Sequential named conv1, act1, ..., dense
"""

from __future__ import annotations

import sys
import types
from collections import OrderedDict

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxvis as jv
from jaxvis.zoo.models import Activation, GlobalAvgPool, MaxPool, host_init

#: Input preprocessing inside a zoo model's ``__call__`` that is not a probe layer (so not
#: visible in ``probe.layers``): ``ShapesCNN`` centres its input, ``x - 0.5``, before conv1.
INPUT_SHIFT = {"shapes_cnn": -0.5}


class VGG128(nnx.Module):
    """VGG-style classifier of 128x128 RGB images in ``[0, 1]``; layers in call order::

    conv1 act1 conv2 act2 pool1     128x128x32 -> 64x64x32
    conv3 act3 conv4 act4 pool2     64x64x64   -> 32x32x64
    conv5 act5 conv6 act6 pool3     32x32x128  -> 16x16x128
    gap dense                       -> 10 logits
    """

    input_shape = (128, 128, 3)

    def __init__(self, rngs: nnx.Rngs, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        w1, w2, w3 = widths

        def conv(a: int, b: int) -> nnx.Conv:
            return nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs)

        self.conv1, self.act1 = conv(3, w1), Activation("relu")
        self.conv2, self.act2 = conv(w1, w1), Activation("relu")
        self.pool1 = MaxPool((2, 2))
        self.conv3, self.act3 = conv(w1, w2), Activation("relu")
        self.conv4, self.act4 = conv(w2, w2), Activation("relu")
        self.pool2 = MaxPool((2, 2))
        self.conv5, self.act5 = conv(w2, w3), Activation("relu")
        self.conv6, self.act6 = conv(w3, w3), Activation("relu")
        self.pool3 = MaxPool((2, 2))
        self.gap = GlobalAvgPool()
        self.dense = nnx.Linear(w3, 10, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = self.pool1(self.act2(self.conv2(self.act1(self.conv1(x)))))
        x = self.pool2(self.act4(self.conv4(self.act3(self.conv3(x)))))
        x = self.pool3(self.act6(self.conv6(self.act5(self.conv5(x)))))
        return self.dense(self.gap(x))


def vgg_probe(seed: int = 0) -> jv.Probe:
    """A :class:`VGG128` with He-normal kernels and small random biases, as a probe.

    Initialised on the host (no JAX random-number compiles); biases ~ N(0, 0.01^2) so that
    ReLUs and max-pool windows are not tied at exactly zero.
    """
    model = host_init(nnx.eval_shape(lambda: VGG128(nnx.Rngs(0))), seed, kernel_gain=2.0)
    rng = np.random.default_rng(seed + 1)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    for path, variable in flat:
        if path[-1] == "bias":
            value = variable.get_value()
            variable.set_value(jnp.asarray(0.01 * rng.standard_normal(value.shape), jnp.float32))
    nnx.update(model, nnx.from_flat_state(flat))
    return jv.Probe(model, input_shape=(128, 128, 3), input_range=(0.0, 1.0))


def forward_flops(probe, upto: str | None = None) -> float:  # noqa: ANN001
    """FLOPs (2 x multiply-adds) of one image's forward pass through the convolutions and
    dense layers, up to and including layer ``upto`` (the whole network when None)."""
    total = 0.0
    for row in probe.summary():
        if row["kind"] == "Conv":
            kh, kw = _pair(row["kernel_size"])
            h, w, cout = row["shape"]
            total += 2.0 * h * w * kh * kw * row["in_features"] * cout
        elif row["kind"] == "Linear":
            total += 2.0 * row["in_features"] * row["out_features"]
        if row["name"] == upto:
            break
    return total


def torch_twin(probe, shift: float = 0.0):  # noqa: ANN001, ANN201
    """The probe's network rebuilt in PyTorch from its layers and weights (eval mode, weights
    with ``requires_grad=False``: only input gradients are wanted, as in jaxvis).

    Flax kernels are HWIO and images NHWC; PyTorch wants OIHW and NCHW, so conv kernels are
    transposed ``(3, 2, 0, 1)`` and dense kernels ``(in, out)`` transposed; ``Flatten`` moves
    the channels last before flattening, so the first dense layer sees the NHWC order it was
    trained on. Max pooling sends the gradient to the first maximum of each window in both.
    ``shift`` is added to the input first (see :data:`INPUT_SHIFT`). Children are named after
    the probe's layers (``"shift"`` for the input shift).
    """
    import torch
    from torch import nn

    weights = probe.weights()
    rows = {row["name"]: row for row in probe.summary()}
    mods: list[tuple[str, nn.Module]] = []
    if shift:
        mods.append(("shift", _Shift(shift)))
    for layer in probe.layers:
        w, row = weights.get(layer.name, {}), rows[layer.name]
        if layer.kind == "Conv":
            if _pair(row.get("strides", 1)) != (1, 1) or str(row.get("padding")) != "SAME":
                raise NotImplementedError(f"{layer.name}: only stride-1 'SAME' convolutions")
            k = torch.tensor(np.ascontiguousarray(np.transpose(w["kernel"], (3, 2, 0, 1))))
            conv = nn.Conv2d(k.shape[1], k.shape[0], tuple(k.shape[2:]), padding="same")
            conv.weight.data, conv.bias.data = k, torch.tensor(np.asarray(w["bias"]))
            mods.append((layer.name, conv))
        elif layer.kind == "Linear":
            kernel = np.asarray(w["kernel"])
            lin = nn.Linear(*kernel.shape)
            lin.weight.data = torch.tensor(np.ascontiguousarray(kernel.T))
            lin.bias.data = torch.tensor(np.asarray(w["bias"]))
            mods.append((layer.name, lin))
        elif layer.kind == "Activation":
            acts = {"tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU}
            if row.get("fn") not in acts:
                raise NotImplementedError(f"{layer.name}: no PyTorch twin for {row.get('fn')}")
            mods.append((layer.name, acts[row["fn"]]()))
        elif layer.kind in ("MaxPool", "AvgPool"):
            window = _pair(row.get("window_shape", 2))
            strides = _pair(row.get("strides") or window)
            if row.get("padding", "VALID") != "VALID":
                raise NotImplementedError(f"{layer.name}: only 'VALID' pooling")
            pool = nn.MaxPool2d if layer.kind == "MaxPool" else nn.AvgPool2d
            mods.append((layer.name, pool(window, strides)))
        elif layer.kind == "Flatten":
            mods.append((layer.name, _NHWCFlatten()))
        elif layer.kind == "GlobalAvgPool":
            mods.append((layer.name, _GlobalAvgPool()))
        else:
            raise NotImplementedError(f"no PyTorch twin for layer kind {layer.kind!r}")
    net = nn.Sequential(OrderedDict(mods)).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _pair(v) -> tuple[int, int]:  # noqa: ANN001
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(a) for a in v)


def import_lucent():  # noqa: ANN201
    """``lucent.optvis`` (render, param, objectives, transform), with a ``torchvision`` shim.

    torch-lucent imports torchvision only for ``transforms.Normalize`` (its ImageNet
    preprocessing, which the benchmarks switch off with ``preprocess=False``); installing
    torchvision from PyPI would replace the CPU torch build, so when it is missing a
    module providing an equivalent ``Normalize`` is registered first.
    """
    try:
        import torchvision.transforms  # noqa: F401
    except ImportError:
        import torch

        class Normalize:
            def __init__(self, mean, std) -> None:  # noqa: ANN001
                self.mean = torch.tensor(mean)[:, None, None]
                self.std = torch.tensor(std)[:, None, None]

            def __call__(self, t):  # noqa: ANN001, ANN204
                return (t - self.mean) / self.std

        tv = types.ModuleType("torchvision")
        tvt = types.ModuleType("torchvision.transforms")
        tvt.Normalize = Normalize
        tv.transforms = tvt
        tv.__jaxvis_shim__ = True
        sys.modules.setdefault("torchvision", tv)
        sys.modules.setdefault("torchvision.transforms", tvt)
    from lucent.optvis import objectives, param, render, transform

    return render, param, objectives, transform


try:
    import torch as _torch

    class _NHWCFlatten(_torch.nn.Module):
        """Flatten in NHWC order, as the JAX model does."""

        def forward(self, x):  # noqa: ANN001, ANN201
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    class _GlobalAvgPool(_torch.nn.Module):
        """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``."""

        def forward(self, x):  # noqa: ANN001, ANN201
            return x.mean(dim=(2, 3))

    class _Shift(_torch.nn.Module):
        """Add a constant to the input (the zoo's in-model input centring)."""

        def __init__(self, shift: float) -> None:
            super().__init__()
            self.shift = float(shift)

        def forward(self, x):  # noqa: ANN001, ANN201
            return x + self.shift

except ImportError:  # pragma: no cover - torch is optional
    _NHWCFlatten = _GlobalAvgPool = _Shift = None  # type: ignore[assignment,misc]
