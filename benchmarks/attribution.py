"""Benchmark integrated gradients on the zoo models (50 Gauss-Legendre steps, batch of 16).

Prints, in one run: the compile time of the first call, images per second afterwards, and the
speed ratio against a naive baseline in the same run (a Python loop over the 50 alphas, one
jitted gradient call each). If ``torch`` and ``captum`` are installed (``pip install
jaxvis[bench]``), also runs Captum's ``IntegratedGradients`` on the same network with the same
weights, checks the two attributions agree, and prints the speed ratio.

Usage::

    python benchmarks/attribution.py            # JAXVIS_FAST=1 for fewer repeats
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxvis as jv
from jaxvis.attribution import integrated_gradients, nodes

STEPS, BATCH = 50, 16
REPEATS = 2 if os.environ.get("JAXVIS_FAST") else 5


def _timed(fn, repeats: int) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return best


def naive_ig(probe, x: np.ndarray, y: np.ndarray) -> jax.Array:  # noqa: ANN001
    """Reference: one jitted gradient call per alpha, summed in Python (zero baseline)."""
    grad = _naive_grad(probe)
    alphas, weights = nodes("gausslegendre", STEPS)
    total = jnp.zeros_like(x)
    for a, w in zip(alphas, weights, strict=True):
        total = total + w * grad(jnp.asarray(a * x), jnp.asarray(y))
    return total * x


_GRADS: dict[int, object] = {}


def _naive_grad(probe):  # noqa: ANN001, ANN202
    if id(probe) not in _GRADS:

        def score(z, y):  # noqa: ANN001, ANN202
            out = probe.apply(probe.params, z, (), False)[0]
            return jnp.take_along_axis(out, y[:, None], 1).sum()

        _GRADS[id(probe)] = jax.jit(jax.grad(score))
    return _GRADS[id(probe)]


def bench_model(name: str) -> None:
    try:
        zoo = jv.zoo.load(name)
    except FileNotFoundError as err:
        print(f"{name}: skipped ({err})")
        return
    x, y = zoo.x_test[:BATCH], zoo.y_test[:BATCH].astype(np.int32)
    t = time.perf_counter()
    res = integrated_gradients(zoo.probe, x, y, steps=STEPS)
    jax.block_until_ready(res.values)
    compile_s = time.perf_counter() - t
    secs = _timed(lambda: integrated_gradients(zoo.probe, x, y, steps=STEPS).values, REPEATS)
    jax.block_until_ready(naive_ig(zoo.probe, x, y))
    naive = _timed(lambda: naive_ig(zoo.probe, x, y), REPEATS)
    ref = naive_ig(zoo.probe, x, y)
    err = float(jnp.abs(ref - res.values).max() / jnp.abs(ref).max())
    rel = float(np.median(res.relative_delta))
    print(
        f"{name}: IG {STEPS} steps x {BATCH} images (batch_size {res.settings['batch_size']}): "
        f"first call {compile_s:.2f} s (compile + run), then {BATCH / secs:.1f} images/s "
        f"({secs * 1000:.0f} ms); naive per-alpha loop {BATCH / naive:.1f} images/s -> "
        f"ratio {naive / secs:.2f}x; max diff {err:.1e}; median |delta| {100 * rel:.2f}%"
    )
    bench_captum(name, zoo, x, y, res.values, secs)


def bench_captum(name, zoo, x, y, values, jax_secs) -> None:  # noqa: ANN001
    try:
        import captum.attr  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        print(
            f"{name}: Captum comparison skipped "
            "(torch/captum not installed: pip install jaxvis[bench])"
        )
        return
    try:
        net = _torch_net(name, zoo)
    except NotImplementedError as err:
        print(f"{name}: Captum comparison skipped ({err})")
        return
    import torch
    from captum.attr import IntegratedGradients

    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)))
    ig = IntegratedGradients(net)
    ig.attribute(xt, target=torch.tensor(y).long(), n_steps=STEPS, method="gausslegendre")
    t = time.perf_counter()
    for _ in range(REPEATS):
        out = ig.attribute(xt, target=torch.tensor(y).long(), n_steps=STEPS, method="gausslegendre")
    secs = (time.perf_counter() - t) / REPEATS
    got = np.transpose(out.detach().numpy(), (0, 2, 3, 1))
    err = float(np.abs(got - np.asarray(values)).max() / np.abs(values).max())
    print(
        f"{name}: Captum {BATCH / secs:.1f} images/s; jaxvis/Captum speed ratio "
        f"{secs / jax_secs:.2f}x; max relative difference {err:.1e} "
        f"({'agree' if err < 1e-3 else 'DISAGREE'})"
    )


def _torch_net(name: str, zoo):  # noqa: ANN001, ANN202
    """The zoo network rebuilt in PyTorch from the same weights (NHWC kernels -> OIHW)."""
    import torch
    from torch import nn

    weights = zoo.probe.weights()
    kinds = {layer.name: layer for layer in zoo.probe.layers}
    mods: list[nn.Module] = []
    for layer in zoo.probe.layers:
        w = weights.get(layer.name, {})
        if layer.kind == "Conv":
            k = torch.tensor(np.transpose(w["kernel"], (3, 2, 0, 1)).copy())
            conv = nn.Conv2d(k.shape[1], k.shape[0], k.shape[2], padding="same")
            conv.weight.data, conv.bias.data = k, torch.tensor(w["bias"])
            mods.append(conv)
        elif layer.kind == "Linear":
            lin = nn.Linear(*w["kernel"].shape)
            lin.weight.data = torch.tensor(np.asarray(w["kernel"]).T.copy())
            lin.bias.data = torch.tensor(w["bias"])
            mods.append(lin)
        elif layer.kind == "Activation":
            fn = zoo.probe.summary()[list(kinds).index(layer.name)].get("fn")
            mods.append({"tanh": nn.Tanh(), "elu": nn.ELU(), "relu": nn.ReLU()}[fn])
        elif layer.kind == "MaxPool":
            mods.append(nn.MaxPool2d(2))
        elif layer.kind == "AvgPool":
            mods.append(nn.AvgPool2d(2))
        elif layer.kind == "Flatten":
            mods.append(_NHWCFlatten())
        elif layer.kind == "GlobalAvgPool":
            mods.append(nn.AdaptiveAvgPool2d(1))
            mods.append(nn.Flatten())
        else:
            raise NotImplementedError(f"no PyTorch twin for layer kind {layer.kind!r}")
    return nn.Sequential(*mods).eval()


try:
    import torch as _torch

    class _NHWCFlatten(_torch.nn.Module):
        """Flatten in NHWC order, as the JAX model does."""

        def forward(self, x):  # noqa: ANN001, ANN201
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

except ImportError:  # pragma: no cover - torch is optional
    _NHWCFlatten = None  # type: ignore[assignment,misc]


def main() -> None:
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores")
    for name in ("mnist_cnn", "shapes_cnn"):
        bench_model(name)


if __name__ == "__main__":
    main()
