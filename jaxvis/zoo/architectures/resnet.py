"""ResNet-18/34/50/101 in Flax Linen, laid out as torchvision's (v1.5: the stride of a
bottleneck is on its 3x3 convolution).

Module names follow torchvision's, with ``.`` inside a stage written ``_``: ``conv1``,
``bn1``, ``layer1_0.conv1``, ``layer1_0.downsample_conv`` (torchvision's ``downsample.0``),
``fc``. BatchNorm runs on its running statistics unless ``train=True``.

Example::

    module = jv.zoo.resnet50(num_classes=1000)
    variables = jv.zoo.init_variables(module, seed=0, input_shape=(224, 224, 3))
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101"]


def _conv(features: int, kernel: int, stride: int, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        name=name,
    )


def _batch_norm(train: bool, momentum: float) -> partial:
    """A BatchNorm factory: batch statistics in training, running averages otherwise."""
    return partial(nn.BatchNorm, use_running_average=not train, momentum=momentum, epsilon=1e-5)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34); output channels ``features``."""

    features: int
    stride: int = 1
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = _batch_norm(train, self.bn_momentum)
        y = _conv(self.features, 3, self.stride, "conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = _conv(self.features, 3, 1, "conv2")(y)
        y = norm(name="bn2")(y)
        return nn.relu(y + _shortcut(self, x, self.features, norm))


class Bottleneck(nn.Module):
    """1x1, strided 3x3, 1x1 (x4 channels) and a shortcut (ResNet-50/101)."""

    features: int
    stride: int = 1
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = _batch_norm(train, self.bn_momentum)
        y = _conv(self.features, 1, 1, "conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = _conv(self.features, 3, self.stride, "conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = _conv(self.features * 4, 1, 1, "conv3")(y)
        y = norm(name="bn3")(y)
        return nn.relu(y + _shortcut(self, x, self.features * 4, norm))


def _shortcut(block: nn.Module, x: jax.Array, out: int, norm: partial) -> jax.Array:
    """Identity, or a strided 1x1 convolution and BatchNorm where the shape changes."""
    if block.stride == 1 and x.shape[-1] == out:
        return x
    x = _conv(out, 1, block.stride, "downsample_conv")(x)
    return norm(name="downsample_bn")(x)


class ResNet(nn.Module):
    """A torchvision-layout ResNet: 7x7/2 stem, 3x3/2 max pooling, four stages, global
    average pooling and a linear head ``fc``.

    Args:
        stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        block: ``"basic"`` or ``"bottleneck"``.
        num_classes: width of the head.
        bn_momentum: BatchNorm's running-average momentum (torchvision's 0.1 is Flax's 0.9).

    Example::

        module = ResNet(stage_sizes=(1, 1, 1, 1), block="bottleneck", num_classes=10)
        logits = module.apply(variables, x)   # x: (N, H, W, 3)
    """

    stage_sizes: Sequence[int]
    block: str = "basic"
    num_classes: int = 1000
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        block_cls = BasicBlock if self.block == "basic" else Bottleneck
        x = _conv(64, 7, 2, "conv1")(x)
        x = nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5, name="bn1"
        )(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage, size in enumerate(self.stage_sizes):
            for i in range(size):
                stride = 2 if stage > 0 and i == 0 else 1
                x = block_cls(
                    64 * 2**stage, stride, self.bn_momentum, name=f"layer{stage + 1}_{i}"
                )(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2, 11.7 M parameters at 1000 classes)."""
    return ResNet((2, 2, 2, 2), "basic", num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34 (basic blocks 3-4-6-3, 21.8 M parameters at 1000 classes)."""
    return ResNet((3, 4, 6, 3), "basic", num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 (bottlenecks 3-4-6-3, 25.6 M parameters at 1000 classes)."""
    return ResNet((3, 4, 6, 3), "bottleneck", num_classes)


def resnet101(num_classes: int = 1000) -> ResNet:
    """ResNet-101 (bottlenecks 3-4-23-3, 44.5 M parameters at 1000 classes)."""
    return ResNet((3, 4, 23, 3), "bottleneck", num_classes)
