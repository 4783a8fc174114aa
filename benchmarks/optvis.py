"""Feature-visualisation speed: steps/s, vectorised vs one-by-one, loop style, compile time.

Prints, in one run (ratios against baselines measured in the same run):

* compile time of the first ``render`` call (one channel, Lucid default) and of a second call
  with other values (channel, seed, lr: should be ~0, nothing compiles again);
* steps per second for one channel;
* all channels of ``shapes_cnn``'s widest layer as one vectorised batch versus the same
  channels one after another (goal: >= 4x faster vectorised);
* a Python loop over a jitted step versus chunks inside ``lax.scan`` (the XLA:CPU trap of
  DESIGN.md: convolution input-gradients inside a loop).

    .venv/bin/python benchmarks/optvis.py [--steps 64] [--model shapes_cnn]

Uses the trained zoo weights when present, else an untrained model of the same shape (the
speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import jaxvis as jv
from jaxvis.optvis import objectives as O


def _probe(name: str) -> tuple[jv.Probe, str]:
    try:
        return jv.zoo.load(name).probe, "trained"
    except FileNotFoundError:
        model = jv.zoo.build(name, 0)
        shape = (28, 28, 1) if name == "mnist_cnn" else (32, 32, 3)
        return jv.Probe(model, input_shape=shape), "untrained (no weights file yet)"


class _Compiles:
    def __init__(self) -> None:
        self.n, self.secs = 0, 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event: str, duration: float, **kw: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1
            self.secs += duration


def _timed(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--model", default="shapes_cnn", choices=jv.zoo.NAMES)
    args = ap.parse_args()
    steps = args.steps
    probe, how = _probe(args.model)
    convs = [layer for layer in probe.layers if layer.kind == "Conv"]
    widest = max(convs, key=lambda layer: layer.shape[-1])
    c = widest.shape[-1]
    print(
        f"model {args.model} ({how}), input {probe.input_shape}, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s), {steps} steps per run"
    )
    print(f"widest conv layer: {widest.name} {widest.shape}")
    compiles = _Compiles()
    render = jv.optvis.render

    # 1. first call: compile + run; second call with other values: no compile
    _, first = _timed(render, probe, O.channel(widest.name, 0), steps=steps)
    n_first, s_first = compiles.n, compiles.secs
    _, second = _timed(render, probe, O.channel(widest.name, 1), steps=steps, seed=1, lr=0.1)
    print(
        f"first call (one channel):   {first:6.2f} s wall, {n_first} compilations, "
        f"{s_first:.2f} s in XLA compile"
    )
    print(
        f"second call (other channel, seed, lr): {second:6.2f} s wall, "
        f"{compiles.n - n_first} new compilations"
    )
    one_sps = steps / second
    print(f"one channel: {one_sps:8.1f} steps/s")

    # 2. whole layer vectorised vs one after another
    render(probe, O.channel(widest.name, "*"), steps=2)  # compile the batched shape
    _, vec = _timed(render, probe, O.channel(widest.name, "*"), steps=steps)
    seq = 0.0
    for ch in range(c):
        _, t = _timed(render, probe, O.channel(widest.name, ch), steps=steps)
        seq += t
    print(
        f"all {c} channels of {widest.name}: vectorised {vec:6.2f} s, one after another "
        f"{seq:6.2f} s -> {seq / vec:4.1f}x faster vectorised (goal >= 4x)"
    )
    print(f"  unit-steps/s: vectorised {c * steps / vec:8.1f}, sequential {c * steps / seq:8.1f}")

    # 3. Python loop over a jitted step vs lax.scan chunks (the XLA:CPU loop trap)
    obj = O.channel(widest.name, "*")
    rows = []
    for loop in ("python", "scan"):
        render(probe, obj, steps=32, chunk=32, loop=loop)  # compile
        _, t = _timed(render, probe, obj, steps=steps, chunk=32, loop=loop)
        rows.append((loop, t))
    (_, tp), (_, ts) = rows
    print(
        f"loop style, {c} channels: python loop over jitted step {steps / tp:7.1f} steps/s, "
        f"lax.scan chunks {steps / ts:7.1f} steps/s -> python is {ts / tp:4.1f}x "
        f"{'faster' if tp < ts else 'slower'} (render's default: python)"
    )
    res = render(probe, obj, steps=steps)
    print(f"(sanity) mean objective after {steps} steps: {float(np.mean(res.values)):.3f}")


if __name__ == "__main__":
    main()
