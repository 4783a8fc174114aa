"""Feature-visualisation speed: steps/s, vectorised vs one-by-one, loop style, compile time.

Prints, in one run (ratios against baselines measured in the same run):

* compile time of the first ``render`` call (one channel, Lucid default) and of a second call
  with other values (channel, seed, lr: should be ~0, nothing compiles again);
* steps per second for one channel;
* all channels of ``shapes_cnn``'s widest layer as one vectorised batch versus the same
  channels one after another (goal: >= 4x faster vectorised), interleaved, and the ceiling
  the model itself puts on that ratio (its forward + input gradient per image at batch 1
  and batched);
* Lucid's transforms as a chain of separate transforms versus one resampling;
* chunks inside ``lax.scan`` (the default) versus a Python loop over a jitted step (the
  XLA:CPU trap of docs/design.md: convolution input-gradients inside a loop);
* at 224x224, a ResNet-50 and a ViT-S/16 with the same random weights on both sides
  (``big_models.build``: the PyTorch twin's ``state_dict`` loaded into the zoo's Linen
  modules): steps/s of ``jv.optvis.render`` with Lucid's setting (``preset="lucid"``: Fourier,
  decorrelation, sigmoid, standard transforms, Adam 0.05) against Lucent's ``render_vis``
  with the same setting (``param.image(224, fft=True, decorrelate=True)``,
  ``transform.standard_transforms``, ImageNet normalisation), one channel and 16 channels of
  one layer, interleaved, medians (goal >= 1.5x). Part of jaxvis's lead is by design:
  ``render`` runs the network only up to the objective's layer (``probe.apply(...,
  truncate=True)``), Lucent always runs the whole network (its hooks read the layer on the
  way).

    .venv/bin/python benchmarks/optvis.py [--steps 64] [--repeats 3] [--model shapes_cnn]
    .venv/bin/python benchmarks/optvis.py --only lucent --quick    # the 224x224 rows only

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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="shapes_cnn", choices=jv.zoo.NAMES)
    ap.add_argument("--quick", action="store_true", help="few steps and repeats")
    ap.add_argument("--only", choices=("small", "lucent"), default=None)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats = min(args.steps, 16), min(args.repeats, 2)
    if args.only != "lucent":
        _small(args)
    if args.only != "small":
        _vs_lucent(args)


def _small(args: argparse.Namespace) -> None:
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

    # 2. whole layer vectorised vs one after another, interleaved
    layer_obj = O.channel(widest.name, "*")
    render(probe, layer_obj, steps=2)  # compile the batched shape
    vec, seq = [], []
    for _ in range(args.repeats):
        vec.append(_timed(render, probe, layer_obj, steps=steps)[1])
        seq.append(
            sum(
                _timed(render, probe, O.channel(widest.name, ch), steps=steps)[1] for ch in range(c)
            )
        )
    v, q = float(np.median(vec)), float(np.median(seq))
    print(
        f"all {c} channels of {widest.name} (median of {args.repeats}): vectorised {v:6.2f} s, "
        f"one after another {q:6.2f} s -> {q / v:4.1f}x faster vectorised (goal >= 4x)"
    )
    print(f"  unit-steps/s: vectorised {c * steps / v:8.1f}, sequential {c * steps / q:8.1f}")
    _ceiling(probe, widest.name, c, q / (c * steps))

    # 3. Lucid's transforms: the chain of separate ones vs one resampling (what render uses)
    _transforms(probe.input_shape, c)

    # 4. lax.scan chunks (the default) vs a Python loop over a jitted step
    rows = []
    for loop in ("scan", "python"):
        render(probe, layer_obj, steps=32, chunk=32, loop=loop)  # compile
        _, t = _timed(render, probe, layer_obj, steps=steps, chunk=32, loop=loop)
        rows.append(t)
    ts, tp = rows
    print(
        f"loop style, {c} channels: lax.scan chunks {steps / ts:7.1f} steps/s, python loop "
        f"over a jitted step {steps / tp:7.1f} steps/s -> scan is {tp / ts:4.1f}x "
        f"{'faster' if ts < tp else 'slower'} (render's default: scan)"
    )
    res = render(probe, layer_obj, steps=steps)
    print(f"(sanity) mean objective after {steps} steps: {float(np.mean(res.values)):.3f}")


def _median_ms(fn, *args, reps: int = 15) -> float:  # noqa: ANN001
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def _ceiling(probe: jv.Probe, layer: str, c: int, seq_step_s: float) -> None:
    """The model's own forward + input gradient per image, at batch 1 and batch ``c``: the
    part of a step that batching cannot shrink unless the convolutions run faster batched."""
    from jaxvis._xla import jit  # the compiler options render's own programs use
    from jaxvis.fast_conv import fast_convolutions

    def value(x: jax.Array, params: object) -> jax.Array:
        with fast_convolutions():
            _, acts = probe.apply(params, x, frozenset({layer}), truncate=True)
        return acts[layer].mean()

    grad = jit(jax.grad(value))
    per_image = {}
    for n in (1, c):
        x = jax.random.uniform(jax.random.key(0), (n, *probe.input_shape))
        per_image[n] = _median_ms(grad, x, probe.params) / n
    bound = seq_step_s * 1e3 / per_image[c]
    print(
        f"  ceiling: model forward + input gradient alone, per image: batch 1 "
        f"{per_image[1]:.3f} ms, batch {c} {per_image[c]:.3f} ms "
        f"({per_image[1] / per_image[c]:.1f}x cheaper batched); a sequential step costs "
        f"{seq_step_s * 1e3:.3f} ms, so vectorising can gain at most ~{bound:.1f}x here"
    )


def _transforms(shape: tuple[int, ...], n: int) -> None:
    from jaxvis._xla import jit  # the compiler options render's own programs use
    from jaxvis.optvis import transforms as T

    h = shape[0]
    fused = T.standard(h)
    pad = max(1, round(12 * h / 128))
    chain = T.compose(
        T.pad(pad, "constant"), T.jitter(fused.jitter1), T.scale_rotate(), T.jitter(fused.jitter2)
    )
    key = jax.random.key(0)
    x = jax.random.uniform(key, (n, *shape))
    g = jax.random.normal(key, x.shape)
    chain_ms = _median_ms(
        jit(jax.grad(lambda z: (T.center_crop(chain(key, z), (h, h)) * g).sum())), x
    )
    fused_ms = _median_ms(jit(jax.grad(lambda z: (fused(key, z) * g).sum())), x)
    print(
        f"Lucid transforms, value + gradient for {n} images: chain of separate transforms "
        f"{chain_ms:6.2f} ms, one resampling (render's) {fused_ms:6.2f} ms -> "
        f"{chain_ms / fused_ms:4.1f}x"
    )


# ------------------------------------------------------------------ 224x224 against Lucent

#: (layer for jaxvis, Lucent's hook name) per network: an early stage, 256 channels / 384
LUCENT_LAYERS = {
    "resnet50": ("layer2_0", "layer2_0"),
    "vit_s16": ("Transformer.encoderblock_1", "blocks_1"),
}


def _vs_lucent(args: argparse.Namespace) -> None:
    import os
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent / "tests")]
    import torch
    from _torch_nets import import_lucent
    from big_models import build

    torch.set_num_threads(2)
    lrender, lparam, lobj, ltf = import_lucent()
    render_vis = lrender.render_vis
    steps = 4 if args.quick else max(8, args.steps // 4)
    widths = (1,) if args.quick else (1, 16)
    print(f"\n224x224 vs Lucent: {steps} steps per run, median of {args.repeats}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    for arch, (layer, hook) in LUCENT_LAYERS.items():
        probe, _, _, twin = build(arch)
        for n in widths:
            obj = O.channel(layer, list(range(n)) if n > 1 else 0)

            def jv_run(obj=obj, probe=probe) -> None:
                jv.optvis.render(probe, obj, steps=steps, preset="lucid")

            def lucent_run(n=n, hook=hook, arch=arch, twin=twin) -> None:
                if arch == "resnet50":
                    terms = [lobj.channel(hook, c, batch=c) for c in range(n)]
                else:  # tokens (N, T, D): the mean over patch tokens of feature c

                    def token(c: int) -> object:
                        return lobj.Objective(lambda m, c=c: -m(hook)[c, 1:, c].mean())

                    terms = [token(c) for c in range(n)]
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                render_vis(
                    twin.eval(), total,
                    param_f=lambda: lparam.image(224, batch=n, fft=True, decorrelate=True),
                    transforms=ltf.standard_transforms, thresholds=(steps,),
                    preprocess=True, show_image=False, progress=False, fixed_image_size=224,
                )  # fmt: skip

            jv_run()  # compile
            lucent_run()  # warm-up
            tj, tl = [], []
            for _ in range(args.repeats):
                tj.append(_timed(jv_run)[1])
                tl.append(_timed(lucent_run)[1])
            j, lu = float(np.median(tj)), float(np.median(tl))
            print(
                f"{arch} {layer} x{n}: jaxvis {steps / j:6.2f} steps/s, Lucent "
                f"{steps / lu:6.2f} steps/s -> {lu / j:4.2f}x (goal >= 1.5x), load "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
