"""The zoo's Flax NNX models, built from one-job layers so that every step is a probe layer.

Activations, pooling and flattening are small modules of their own (Keras style), so the
output after a ``tanh`` or ``elu`` is a layer a user can name (``act3``), and a probe reads
each layer's settings (``kernel_size``, ``strides``, ``padding``, ``window_shape``, ``fn``)
from the module's attributes.

Example::

    from flax import nnx
    from jaxvis.zoo.models import MnistCNN

    model = MnistCNN(nnx.Rngs(0))
    logits = model(jnp.zeros((2, 28, 28, 1)))      # (2, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "Activation",
    "AvgPool",
    "Flatten",
    "GlobalAvgPool",
    "MaxPool",
    "MnistCNN",
    "ShapesCNN",
    "host_init",
]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
}


class Activation(nnx.Module):
    """An elementwise non-linearity as a layer of its own; ``fn.__name__`` names it.

    Example::

        act = Activation(jnp.tanh)       # or Activation("tanh")
        act.fn.__name__                  # 'tanh'
    """

    def __init__(self, fn: Callable[[jax.Array], jax.Array] | str) -> None:
        if isinstance(fn, str):
            if fn not in _ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {fn!r}: expected one of {sorted(_ACTIVATIONS)}"
                )
            fn = _ACTIVATIONS[fn]
        if not callable(fn):
            raise TypeError(f"fn must be callable or a name, got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    a, b = (int(v) for v in value)
    return (a, b)


class _Pool(nnx.Module):
    """Settings shared by the pooling layers; ``strides`` default to the window."""

    def __init__(
        self,
        window_shape: int | Sequence[int] = (2, 2),
        strides: int | Sequence[int] | None = None,
        padding: str = "VALID",
    ) -> None:
        self.window_shape = _pair(window_shape)
        self.strides = self.window_shape if strides is None else _pair(strides)
        self.padding = padding


class MaxPool(_Pool):
    """2-D max pooling over NHWC inputs.

    For non-overlapping windows with ``'VALID'`` padding (the usual 2x2/stride 2) the maximum
    is picked by comparison, so its gradient is an elementwise select routed to the *first*
    maximum of each window (as ``jax.grad`` of ``lax.reduce_window`` and PyTorch do) instead
    of XLA's slow select-and-scatter. Other settings use ``flax.nnx.max_pool``.

    Example::

        MaxPool((2, 2))(jnp.ones((1, 28, 28, 4))).shape   # (1, 14, 14, 4)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.strides == self.window_shape and self.padding == "VALID":
            return _blockwise_max(x, self.window_shape)
        return nnx.max_pool(x, self.window_shape, self.strides, self.padding)


def _blockwise_max(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Max over non-overlapping ``window`` blocks; the gradient goes to the first maximum."""
    wh, ww = window
    n, h, w, c = x.shape
    ho, wo = h // wh, w // ww
    blocks = x[:, : ho * wh, : wo * ww, :].reshape(n, ho, wh, wo, ww, c)
    blocks = blocks.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, wh * ww)
    first = jnp.argmax(jax.lax.stop_gradient(blocks), axis=-1)
    chosen = jnp.arange(wh * ww) == first[..., None]
    return jnp.sum(jnp.where(chosen, blocks, jnp.zeros_like(blocks)), axis=-1)


class AvgPool(_Pool):
    """2-D mean pooling over NHWC inputs (``flax.nnx.avg_pool``).

    Example::

        AvgPool((2, 2))(jnp.ones((1, 32, 32, 8))).shape   # (1, 16, 16, 8)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.avg_pool(x, self.window_shape, self.strides, self.padding)


class Flatten(nnx.Module):
    """Flatten all axes but the batch axis: ``(N, H, W, C) -> (N, H*W*C)``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1)


class GlobalAvgPool(nnx.Module):
    """Mean over the spatial axes: ``(N, H, W, C) -> (N, C)``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=(1, 2))


def _conv(cin: int, cout: int, rngs: nnx.Rngs, he: bool = False) -> nnx.Conv:
    """A 3x3 ``'SAME'`` convolution; ``he`` uses He-normal kernels instead of LeCun-normal."""
    init = {"kernel_init": nnx.initializers.he_normal()} if he else {}
    return nnx.Conv(cin, cout, (3, 3), padding="SAME", rngs=rngs, **init)


class MnistCNN(nnx.Module):
    """The digit classifier of "watch a neural network learn to see".

    Input ``(N, 28, 28, 1)`` in ``[0, 1]``; output ``(N, 10)`` logits. Layers, in call order::

        conv1 act1 conv2 act2 pool1        28x28x4  -> 14x14x4   (2x2 max pool)
        conv3 act3 conv4 act4 pool2        14x14x8  -> 7x7x8     (2x2 max pool)
        conv5 act5 conv6 act6              7x7x16
        flatten dense1 act7 dense2 act8 dense3     784 -> 64 -> 32 -> 10

    Convolutions are 3x3, ``'SAME'``, stride 1; every activation is ``tanh``. Downsampling is
    2x2/stride-2 max pooling after the second and fourth convolution.

    Example::

        model = MnistCNN(nnx.Rngs(0))
        model(jnp.zeros((1, 28, 28, 1))).shape    # (1, 10)
    """

    input_shape = (28, 28, 1)
    kernel_gain = 1.0  # LeCun-normal kernels (Flax's default), see host_init

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = _conv(1, 4, rngs)
        self.act1 = Activation(jnp.tanh)
        self.conv2 = _conv(4, 4, rngs)
        self.act2 = Activation(jnp.tanh)
        self.pool1 = MaxPool((2, 2))
        self.conv3 = _conv(4, 8, rngs)
        self.act3 = Activation(jnp.tanh)
        self.conv4 = _conv(8, 8, rngs)
        self.act4 = Activation(jnp.tanh)
        self.pool2 = MaxPool((2, 2))
        self.conv5 = _conv(8, 16, rngs)
        self.act5 = Activation(jnp.tanh)
        self.conv6 = _conv(16, 16, rngs)
        self.act6 = Activation(jnp.tanh)
        self.flatten = Flatten()
        self.dense1 = nnx.Linear(7 * 7 * 16, 64, rngs=rngs)
        self.act7 = Activation(jnp.tanh)
        self.dense2 = nnx.Linear(64, 32, rngs=rngs)
        self.act8 = Activation(jnp.tanh)
        self.dense3 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.pool1(self.act2(self.conv2(self.act1(self.conv1(x)))))
        x = self.pool2(self.act4(self.conv4(self.act3(self.conv3(x)))))
        x = self.act6(self.conv6(self.act5(self.conv5(x))))
        x = self.act8(self.dense2(self.act7(self.dense1(self.flatten(x)))))
        return self.dense3(x)


class ShapesCNN(nnx.Module):
    """All-convolutional classifier of coloured shapes ("inside the mind of a neural network").

    Input ``(N, 32, 32, 3)`` RGB in ``[0, 1]``; output ``(N, n_classes)`` logits: the model's
    last step is the softmax, which is left to the loss (``optax.softmax_cross_entropy``) and
    to the reader (``jax.nn.softmax(logits)``), so a probe's output and attribution targets
    are the logits. Layers, in call order::

        conv1 act1 conv2 act2 pool1     32x32x16 -> 16x16x16  (2x2 mean pool)
        conv3 act3 conv4 act4 pool2     16x16x32 -> 8x8x32    (2x2 mean pool)
        conv5 act5 conv6                8x8x64   -> 8x8xn_classes (one map per class)
        gap                             global average pooling -> logits

    Every convolution is 3x3, ``'SAME'``; every activation is ELU; no dense layer, so
    ``conv6``'s channel ``k`` is a spatial map of the evidence for class ``k``. Kernels start
    He-normal: with LeCun-normal ones the ELUs work near their linear part, where a shape of
    random colour carries no linear signal, and training stalls for many epochs. The input is
    centred (``x - 0.5``) before ``conv1``, inside the model: callers still pass ``[0, 1]``.

    Example::

        model = ShapesCNN(nnx.Rngs(0), n_classes=8)
        model(jnp.zeros((1, 32, 32, 3))).shape    # (1, 8)
    """

    input_shape = (32, 32, 3)
    kernel_gain = 2.0  # He-normal kernels, see host_init

    def __init__(
        self, rngs: nnx.Rngs, n_classes: int = 8, widths: Sequence[int] = (16, 32, 64)
    ) -> None:
        w1, w2, w3 = widths
        self.conv1 = _conv(3, w1, rngs, he=True)
        self.act1 = Activation(jax.nn.elu)
        self.conv2 = _conv(w1, w1, rngs, he=True)
        self.act2 = Activation(jax.nn.elu)
        self.pool1 = AvgPool((2, 2))
        self.conv3 = _conv(w1, w2, rngs, he=True)
        self.act3 = Activation(jax.nn.elu)
        self.conv4 = _conv(w2, w2, rngs, he=True)
        self.act4 = Activation(jax.nn.elu)
        self.pool2 = AvgPool((2, 2))
        self.conv5 = _conv(w2, w3, rngs, he=True)
        self.act5 = Activation(jax.nn.elu)
        self.conv6 = _conv(w3, n_classes, rngs, he=True)
        self.gap = GlobalAvgPool()

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x - 0.5  # centred pixels train faster; conv1 sees [-0.5, 0.5]
        x = self.pool1(self.act2(self.conv2(self.act1(self.conv1(x)))))
        x = self.pool2(self.act4(self.conv4(self.act3(self.conv3(x)))))
        x = self.conv6(self.act5(self.conv5(x)))
        return self.gap(x)


# Flax's variance-scaling "truncated_normal": a standard normal cut at +-2, rescaled to unit
# variance (the std of that truncated normal is 0.87962566103423978).
_TRUNCATED_STD = 0.87962566103423978


def host_init(model: nnx.Module, seed: int, kernel_gain: float = 1.0) -> nnx.Module:
    """Initialise every parameter of ``model`` on the host with numpy, in place.

    Kernels are variance-scaling truncated normals with variance ``kernel_gain / fan_in``
    (``fan_in`` = product of all but the last axis; gain 1 is LeCun-normal, Flax's default;
    gain 2 is He-normal); everything else (biases) is zero. These are the distributions of
    the Flax initialisers, without compiling JAX's random number generator for every layer
    shape, which costs seconds per shape on a CPU. ``model`` may be abstract (built under
    ``nnx.eval_shape``). Example::

        model = host_init(nnx.eval_shape(lambda: MnistCNN(nnx.Rngs(0))), seed=0)
    """
    rng = np.random.default_rng(seed)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    for path, variable in flat:
        spec = variable.get_value()
        shape, dtype = tuple(spec.shape), spec.dtype
        if path[-1] == "kernel" and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            std = np.sqrt(kernel_gain / fan_in) / _TRUNCATED_STD
            draws = rng.standard_normal(shape)
            bad = np.abs(draws) > 2.0
            while bad.any():  # resample outside +-2, as a truncated normal does
                draws[bad] = rng.standard_normal(int(bad.sum()))
                bad = np.abs(draws) > 2.0
            value = draws * std
        else:
            value = np.zeros(shape)
        variable.set_value(jnp.asarray(value, dtype=dtype))
    nnx.update(model, nnx.from_flat_state(flat))
    return model
