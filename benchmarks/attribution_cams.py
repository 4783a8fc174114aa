"""Benchmark the CAM family (Grad-CAM++, Score-CAM, LayerCAM) and the PAIR path methods (Blur
IG, Guided IG, XRAI) on the zoo models: images/s of jaxvis against references driven by the
same network in the same run.

* CAMs: the formulas in PyTorch on the PyTorch twin of the network (same weights;
  ``_torch_nets.torch_twin``), autograd through a forward hook at the layer; Score-CAM as a
  loop over channels, each one batched call on all images.
* Blur IG, Guided IG, XRAI: PAIR's ``saliency`` classes, one image at a time as PAIR runs,
  whose ``call_model_function`` returns gradients of a jitted ``jax.grad`` of the same model
  (PAIR's batch size: all steps of an image in one call where PAIR allows it).

Each timing is the median of 5 runs, the two sides interleaved; the first (compiling) call
is not timed. ``--quick``: 4 images and fewer steps. Also prints the largest difference between
the two sides, relative to the reference's largest value.

Usage::

    python benchmarks/attribution_cams.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxvis as jv
from jaxvis.attribution import (
    blur_ig,
    grad_cam_plus_plus,
    guided_ig,
    layer_cam,
    score_cam,
    xrai,
)

sys.path.insert(0, str(Path(__file__).parent))
from _torch_nets import INPUT_SHIFT, torch_twin  # noqa: E402

LAYERS = {"mnist_cnn": "act6", "shapes_cnn": "conv6"}
REPEATS = 5


def interleaved(fns: list[Callable[[], object]], repeats: int = REPEATS) -> list[float]:
    """Median seconds of each function over ``repeats`` rounds, one call of each per round."""
    for fn in fns:
        jax.block_until_ready(fn())  # compile / warm up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[i].append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]


# ----------------------------------------------------------------------------- torch CAMs


def torch_cams(net, layer: str, x: np.ndarray, y: np.ndarray) -> dict[str, Callable]:  # noqa: ANN001
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.tensor(y).long()
    rows = torch.arange(len(y))
    size = x.shape[1:3]

    def grads_acts() -> tuple:
        store = {}
        handle = getattr(net, layer).register_forward_hook(lambda m, i, o: store.setdefault("a", o))
        inp = xt.clone().requires_grad_(True)
        try:
            score = net(inp)[rows, yt].sum()
        finally:
            handle.remove()
        (g,) = torch.autograd.grad(score, store["a"])
        return g, store["a"].detach()

    def up(cam: torch.Tensor) -> np.ndarray:
        return F.interpolate(cam[:, None], size=size, mode="bilinear")[:, 0].numpy()

    def plus_plus() -> np.ndarray:
        g, a = grads_acts()
        g2 = g * g
        alpha = torch.where(g != 0, g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g2 * g + 1e-6), 0)
        w = (torch.relu(g) * alpha).sum((2, 3), keepdim=True)
        return up(torch.relu((w * a).sum(1)))

    def layer_map() -> np.ndarray:
        g, a = grads_acts()
        return up(torch.relu((torch.relu(g) * a).sum(1)))

    def score() -> np.ndarray:
        with torch.no_grad():
            store = {}
            handle = getattr(net, layer).register_forward_hook(
                lambda m, i, o: store.setdefault("a", o)
            )
            net(xt)
            handle.remove()
            a = store["a"]
            scores = []
            for c in range(a.shape[1]):
                m = F.interpolate(a[:, c : c + 1], size=size, mode="bilinear")
                lo, hi = m.amin((2, 3), keepdim=True), m.amax((2, 3), keepdim=True)
                m = torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-30), 0.0)
                scores.append(net(xt * m)[rows, yt])
            w = torch.softmax(torch.stack(scores, 1), 1)
            return up(torch.relu((w[:, :, None, None] * a).sum(1)))

    return {"grad_cam_plus_plus": plus_plus, "layer_cam": layer_map, "score_cam": score}


# ----------------------------------------------------------------------------- PAIR


def pair_methods(probe, x: np.ndarray, y: np.ndarray, steps: dict) -> dict[str, Callable]:  # noqa: ANN001
    import saliency.core as saliency
    import saliency.core.guided_ig as pair_guided_ig

    # PAIR's GuidedIG calls np.quantile(interpolation=...), which numpy 2 removed
    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = lambda a, q, interpolation="linear", **kw: np.quantile(
        a, q, method=interpolation, **kw
    )
    pair_guided_ig.np = shim

    @jax.jit
    def grads(xb: jax.Array, t: jax.Array) -> jax.Array:
        def total(v: jax.Array) -> jax.Array:
            out = probe.apply(probe.params, v, (), False)[0]
            return jnp.take_along_axis(out, t[:, None], 1).sum()

        return jax.grad(total)(xb)

    def call(xb: np.ndarray, call_model_args: dict, expected_keys: list) -> dict:
        t = jnp.full((len(xb),), call_model_args["target"], jnp.int32)
        return {saliency.INPUT_OUTPUT_GRADIENTS: np.asarray(grads(jnp.asarray(xb, jnp.float32), t))}

    def each(fn: Callable) -> Callable[[], np.ndarray]:
        return lambda: np.stack([fn(x[i], {"target": int(y[i])}) for i in range(len(x))])

    zeros, ones = np.zeros_like(x[0]), np.ones_like(x[0])
    params = saliency.XRAIParameters(steps=steps["xrai"])
    return {
        "blur_ig": each(
            lambda im, a: saliency.BlurIG().GetMask(
                im, call, a, steps=steps["blur_ig"], batch_size=steps["blur_ig"]
            )
        ),
        "guided_ig": each(
            lambda im, a: saliency.GuidedIG().GetMask(
                im, call, a, x_baseline=zeros, x_steps=steps["guided_ig"]
            )
        ),
        "xrai": each(
            lambda im, a: saliency.XRAI().GetMask(
                im, call, a, baselines=[zeros, ones], batch_size=steps["xrai"],
                extra_parameters=params,
            )
        ),
    }  # fmt: skip


# ----------------------------------------------------------------------------- main


def bench(name: str, n: int, steps: dict) -> None:
    import torch

    zoo = jv.zoo.load(name)
    probe, x, y = zoo.probe, zoo.x_test[:n], zoo.y_test[:n].astype(np.int32)
    layer = LAYERS[name]
    net = torch_twin(probe, INPUT_SHIFT.get(name, 0.0))
    ours = {
        "grad_cam_plus_plus": lambda: grad_cam_plus_plus(probe, x, y, layer=layer).values,
        "layer_cam": lambda: layer_cam(probe, x, y, layer=layer).values,
        "score_cam": lambda: score_cam(probe, x, y, layer=layer).values,
        "blur_ig": lambda: blur_ig(probe, x, y, steps=steps["blur_ig"]).values,
        "guided_ig": lambda: guided_ig(probe, x, y, steps=steps["guided_ig"]).values,
        "xrai": lambda: xrai(probe, x, y, steps=steps["xrai"]).values,
    }
    refs = {**torch_cams(net, layer, x, y), **pair_methods(probe, x, y, steps)}
    torch.set_num_threads(2)
    for method, fn in ours.items():
        ref = refs[method]
        t_ours, t_ref = interleaved([fn, ref])
        got, want = np.asarray(fn()), np.asarray(ref())
        err = float(np.abs(got.reshape(want.shape) - want).max() / np.abs(want).max())
        side = (
            "torch twin" if method in ("grad_cam_plus_plus", "layer_cam", "score_cam") else "PAIR"
        )
        extra = f" {steps[method]} steps" if method in steps else ""
        print(
            f"{name:10s} {method:18s}{extra:10s} jaxvis {n / t_ours:8.1f} img/s | {side:10s} "
            f"{n / t_ref:8.1f} img/s | ratio {t_ref / t_ours:6.2f}x | max diff {err:.1e}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images, fewer steps")
    args = parser.parse_args()
    if args.quick:
        n, steps = 4, {"blur_ig": 20, "guided_ig": 20, "xrai": 10}
    else:
        n, steps = 16, {"blur_ig": 100, "guided_ig": 200, "xrai": 100}  # PAIR's defaults
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, load average {load}; {n} images")
    for name in ("mnist_cnn", "shapes_cnn"):
        bench(name, n, steps)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")


if __name__ == "__main__":
    main()
