"""jaxvis versus PyTorch (Captum, Lucent) on the same networks, weights and machine (issue 7).

Networks: the zoo's ``mnist_cnn`` and ``shapes_cnn`` (trained) and a VGG-style 128x128 RGB
network (``_torch_nets.VGG128``, random He-normal weights), each rebuilt in PyTorch with the
weights copied. Before timing, checks that the logits agree (1e-4 of the largest), that
integrated gradients, saliency and SmoothGrad (with jaxvis's own noise draws fed to Captum's
``Saliency``) agree, and that the input gradient of a feature-visualisation objective agrees
with Lucent's objective on the same images.

Then, at batch 1 and 16, interleaved (jaxvis, PyTorch, jaxvis, ...), the median of the repeats:

* IG, 50 Gauss-Legendre nodes: ``jv.attribution.integrated_gradients`` vs Captum's
  ``IntegratedGradients(method="gausslegendre")`` (the same points per model call on both
  sides: Captum's ``internal_batch_size`` = jaxvis's automatic ``batch_size``, rounded to
  whole steps of the batch);
* saliency: ``jv.attribution.saliency`` vs Captum's ``Saliency``;
* SmoothGrad, 16 samples, noise 0.15: ``jv.attribution.smoothgrad`` vs Captum's
  ``NoiseTunnel(Saliency)`` (signed gradients, ``nt_samples_batch_size`` matched);
* 256 feature-visualisation steps: ``jv.optvis.render`` (Lucid preset) vs Lucent's
  ``render_vis`` with its default Fourier parameterisation, standard transforms and Adam 0.05
  (``preprocess=False``: the networks take [0, 1] pixels; ``fixed_image_size`` = the network's
  input size, as Lucent would otherwise upsample to 224 pixels, which the MNIST net cannot take;
  for the 28- and 32-pixel nets Lucent's pad/jitter shrink in proportion, as jaxvis's do).
  Batch 16 is 16 channels of one layer at once (Lucent: ``param.image(w, batch=16)`` and a
  sum of ``channel(layer, c, batch=c)``).

Printed per row: seconds (jaxvis, PyTorch), ratio PyTorch / jaxvis (> 1: jaxvis faster) and
achieved GFLOP/s of each (useful FLOPs: the forward pass through the convolutions and dense
layers plus the input gradient = 2x the forward, per point; no weight gradients are needed,
and the PyTorch twins have ``requires_grad=False`` weights), next to a measured float32
2048^3 matrix-product ceiling of each library. Last, the compile time of the first call of each
tool per network at batch 1, in fresh subprocesses: without a persistent compilation cache,
then twice with ``JAX_COMPILATION_CACHE_DIR`` set to a new temporary directory (cold, warm).

Usage::

    .venv/bin/python benchmarks/vs_pytorch.py            # everything (about 30 min on 2 cores)
    .venv/bin/python benchmarks/vs_pytorch.py --quick    # batch 1, 3 repeats, 64 FV steps
    .venv/bin/python benchmarks/vs_pytorch.py --models mnist_cnn --no-compile

Needs the ``bench`` extra (torch 2.13.0 CPU, captum, torch-lucent; lucent's torchvision
import is shimmed when torchvision is absent). ``torch.set_num_threads(2)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

IG_STEPS = 50
SG_SAMPLES = 16
SG_NOISE = 0.15
FV_STEPS = 256
MODELS = ("mnist_cnn", "shapes_cnn", "vgg128")
#: vgg128 at batch 16 (unless --fv-steps is given): FV steps and PyTorch's first thread count
#: only, to keep the run near 20 minutes (steps are identical work: seconds scale with steps)
BIG_FV_STEPS = 64
#: the layer whose channels feature visualisation maximises (the deepest conv with >= 16)
FV_LAYER = {"mnist_cnn": "conv6", "shapes_cnn": "conv5", "vgg128": "conv6"}


# ----------------------------------------------------------------------------- networks


def load(name: str, batch: int):  # noqa: ANN201
    """``(probe, x, y, shift)``: the probe, ``batch`` images, their targets, the input shift."""
    from _torch_nets import INPUT_SHIFT, vgg_probe

    import jaxvis as jv

    if name == "vgg128":
        probe = vgg_probe()
        rng = np.random.default_rng(0)
        # smooth-ish random images: 16x16 noise upsampled 8x (nearest) plus fine noise
        coarse = rng.random((batch, 16, 16, 3), dtype=np.float32)
        x = np.repeat(np.repeat(coarse, 8, 1), 8, 2)
        x = np.clip(0.8 * x + 0.2 * rng.random(x.shape, dtype=np.float32), 0, 1)
        y = np.asarray(probe(x)).argmax(1).astype(np.int32)
        return probe, x.astype(np.float32), y, 0.0
    zoo = jv.zoo.load(name)
    x = np.asarray(zoo.x_test[:batch], np.float32)
    y = np.asarray(zoo.y_test[:batch]).astype(np.int32)
    return zoo.probe, x, y, INPUT_SHIFT.get(name, 0.0)


def nchw(x: np.ndarray):  # noqa: ANN201
    import torch

    return torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def nhwc(t) -> np.ndarray:  # noqa: ANN001
    return np.transpose(t.detach().numpy(), (0, 2, 3, 1))


def sg_batch_size(probe, n: int) -> int:  # noqa: ANN001
    """jaxvis's automatic points per model call for SmoothGrad over ``n`` images."""
    try:
        from jaxvis.attribution._checks import auto_batch_size

        return int(auto_batch_size(probe, SG_SAMPLES * n))
    except ImportError:  # private helper moved: Captum then runs every sample at once
        return SG_SAMPLES * n


# ----------------------------------------------------------------------------- the work


class Work:
    """The jaxvis and PyTorch callables of one network at one batch size."""

    def __init__(self, name: str, probe, x, y, shift: float, fv_steps: int) -> None:  # noqa: ANN001
        import torch
        from _torch_nets import forward_flops, import_lucent, torch_twin
        from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

        import jaxvis as jv

        self.jv, self.torch = jv, torch
        self.name, self.probe, self.x, self.y = name, probe, x, y
        self.n = len(x)
        self.net = torch_twin(probe, shift)
        self.xt, self.yt = nchw(x), torch.tensor(y).long()
        self.ig, self.sal = IntegratedGradients(self.net), Saliency(self.net)
        self.nt = NoiseTunnel(self.sal)
        self.fv_steps = fv_steps
        self.layer = FV_LAYER[name]
        self.flops = forward_flops(probe)
        self.fv_flops = forward_flops(probe, self.layer)
        self.lucent = import_lucent()
        # the same points per model call as jaxvis's automatic batch_size, in whole steps
        self.ig_chunk = self._ig_points()
        self.sg_chunk = max(1, sg_batch_size(probe, self.n) // self.n)

    def _ig_points(self) -> int:
        try:
            from jaxvis.attribution._checks import auto_batch_size

            auto = int(auto_batch_size(self.probe, IG_STEPS * self.n))
        except ImportError:
            auto = IG_STEPS * self.n
        return max(1, auto // self.n) * self.n

    # --- jaxvis
    def jax_ig(self):  # noqa: ANN201
        res = self.jv.attribution.integrated_gradients(self.probe, self.x, self.y, steps=IG_STEPS)
        return np.asarray(res.values)

    def jax_saliency(self):  # noqa: ANN201
        return np.asarray(self.jv.attribution.saliency(self.probe, self.x, self.y).values)

    def jax_smoothgrad(self):  # noqa: ANN201
        res = self.jv.attribution.smoothgrad(
            self.probe, self.x, self.y, noise=SG_NOISE, samples=SG_SAMPLES
        )
        return np.asarray(res.values)

    def fv_objective(self):  # noqa: ANN201
        if self.n == 1:
            return f"{self.layer}:0"
        return [f"{self.layer}:{c}" for c in range(self.n)]

    def jax_fv(self, steps: int | None = None):  # noqa: ANN201
        res = self.jv.optvis.render(
            self.probe, self.fv_objective(), steps=steps or self.fv_steps, preset="lucid"
        )
        return res.images

    # --- PyTorch
    def torch_ig(self):  # noqa: ANN201
        return self.ig.attribute(
            self.xt,
            baselines=self.torch.zeros_like(self.xt),
            target=self.yt,
            n_steps=IG_STEPS,
            method="gausslegendre",
            internal_batch_size=self.ig_chunk,
        )

    def torch_saliency(self):  # noqa: ANN201
        return self.sal.attribute(self.xt, target=self.yt)

    def torch_smoothgrad(self):  # noqa: ANN201
        return self.nt.attribute(
            self.xt,
            nt_type="smoothgrad",
            nt_samples=SG_SAMPLES,
            nt_samples_batch_size=self.sg_chunk,
            stdevs=SG_NOISE,
            target=self.yt,
            abs=False,
        )

    def lucent_objective(self):  # noqa: ANN201
        objectives = self.lucent[2]
        if self.n == 1:
            return objectives.channel(self.layer, 0)
        return objectives.Objective.sum(
            [objectives.channel(self.layer, c, batch=c) for c in range(self.n)]
        )

    def lucent_transforms(self) -> list:
        transform = self.lucent[3]
        size = self.probe.input_shape[0]
        if size >= 128:
            return list(transform.standard_transforms)

        def px(v: int) -> int:  # as jaxvis's transforms.standard(size); Lucent's jitter needs > 1
            return max(2, round(v * size / 128))

        return [
            transform.pad(max(1, round(12 * size / 128)), mode="constant", constant_value=0.5),
            transform.jitter(px(8)),
            transform.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
            transform.random_rotate(list(range(-10, 11)) + 5 * [0]),
            transform.jitter(px(4)),
        ]

    def torch_fv(self, steps: int | None = None):  # noqa: ANN201
        render, param = self.lucent[0], self.lucent[1]
        h, w, c = self.probe.input_shape
        try:
            return render.render_vis(
                self.net,
                self.lucent_objective(),
                param_f=lambda: param.image(w, h, batch=self.n, channels=1 if c == 1 else None),
                transforms=self.lucent_transforms(),
                thresholds=(steps or self.fv_steps,),
                preprocess=False,
                fixed_image_size=(h, w),
                show_image=False,
                progress=False,
            )
        finally:  # render_vis leaves a forward hook on every module; keep the net clean
            for m in self.net.modules():
                m._forward_hooks.clear()


# ----------------------------------------------------------------------------- checks


def checks(work: Work) -> list[str]:
    """Agreement of logits, IG, saliency, SmoothGrad and a feature-vis input gradient."""
    import jax
    import jax.numpy as jnp
    import torch

    from jaxvis.optvis import objectives as O

    out: list[str] = []
    probe, x, name = work.probe, work.x, work.name

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))

    def line(what: str, err: float, tol: float, extra: str = "") -> None:
        verdict = "agree" if err < tol else "DISAGREE"
        out.append(f"  {name:10s} {what:36s} {err:.1e} ({verdict}, tol {tol:g}){extra}")

    def per_image(what: str, got: np.ndarray, ref: np.ndarray, tol: float, points) -> None:  # noqa: ANN001
        """Agreement image by image. An image above ``tol`` counts as agreeing only if, at one
        of its model inputs ``points(i)``, XLA and PyTorch pick a different maximum in some
        max-pool window (a near-tie within float32 rounding), so the gradient goes to another
        pixel; the number of such windows is printed."""
        errs = np.array([rel(got[i], ref[i]) for i in range(len(ref))])
        bad = np.flatnonzero(errs >= tol)
        flips = {int(i): maxpool_flips(probe, work.net, points(int(i))) for i in bad}
        explained = [i for i, f in flips.items() if f > 0]
        verdict = "agree" if len(bad) == len(explained) else "DISAGREE"
        extra = f"{len(ref) - len(bad)}/{len(ref)} images below tol"
        if len(bad):
            extra += (
                f"; above: images {bad.tolist()} ({', '.join(f'{errs[i]:.0e}' for i in bad)}) "
                f"with {', '.join(str(flips[int(i)]) for i in bad)} max-pool windows where XLA "
                "and PyTorch pick different maxima"
            )
        out.append(
            f"  {name:10s} {what:36s} {errs.min():.0e}..{errs.max():.0e} per image ({verdict}, "
            f"tol {tol:g}; {extra})"
        )

    out.append(f"  {name:10s} {'what':36s} max|diff| / max|reference|")
    with torch.no_grad():
        logits_t = work.net(work.xt).numpy()
    line("logits", rel(logits_t, np.asarray(probe(x))), 1e-4)

    alphas = np.asarray(__import__("jaxvis").attribution.nodes("gausslegendre", IG_STEPS)[0])
    per_image(
        f"IG ({IG_STEPS} gausslegendre nodes)",
        work.jax_ig(),
        nhwc(work.torch_ig()),
        1e-4,
        lambda i: alphas.astype(np.float32)[:, None, None, None] * x[i],
    )
    per_image(
        "saliency (|grad|)",
        work.jax_saliency(),
        nhwc(work.torch_saliency()),
        1e-4,
        lambda i: x[i : i + 1],
    )

    # SmoothGrad: jaxvis's noise draws (jax.random.fold_in(key(seed), m * n + e), threefry's
    # classic form as jaxvis._rng.fast_draws) fed to Captum's Saliency, averaged; the timed
    # NoiseTunnel draws its own noise.
    n = len(x)
    lo, hi = probe.input_range
    sigma = np.float32(SG_NOISE * (hi - lo))
    with jax.threefry_partitionable(False):
        rng = jax.random.key(0)
        ids = jnp.arange(SG_SAMPLES * n, dtype=jnp.int32)
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(ids)
        eps = np.asarray(jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys))
    noisy = (np.tile(x, (SG_SAMPLES, 1, 1, 1)) + sigma * eps).astype(np.float32)
    grads = work.sal.attribute(nchw(noisy), target=work.yt.repeat(SG_SAMPLES), abs=False)
    sg_ref = nhwc(grads).reshape(SG_SAMPLES, n, *x.shape[1:]).mean(0)
    per_image(
        f"SmoothGrad ({SG_SAMPLES} samples, same noise)",
        work.jax_smoothgrad(),
        sg_ref,
        1e-4,
        lambda i: noisy.reshape(SG_SAMPLES, n, *x.shape[1:])[:, i],
    )

    # feature vis: d/d image of the per-image channel objective, jaxvis's objective (traced
    # under fast_convolutions, as render does) vs minus Lucent's objective on the same images
    try:
        from jaxvis.fast_conv import fast_convolutions
    except ImportError:
        fast_convolutions = contextlib.nullcontext
    img = np.random.default_rng(1).random((n, *probe.input_shape), dtype=np.float32)
    obj = O.as_objective(work.fv_objective()).bind(probe)
    wanted = set(obj.layers) - {O.OUTPUT}

    def loss(z):  # noqa: ANN001, ANN202
        with fast_convolutions():
            o, acts = probe.apply(probe.params, z, wanted, truncate=True)
        return jnp.sum(obj(acts, o))

    g_jax = np.asarray(jax.jit(jax.grad(loss))(img))
    render = work.lucent[0]
    img_t = nchw(img).requires_grad_(True)
    hook = render.hook_model(work.net, lambda: img_t)
    try:
        work.net(img_t)
        (-work.lucent_objective()(hook)).backward()
    finally:
        for m in work.net.modules():
            m._forward_hooks.clear()
    line(f"FV input gradient ({work.layer}, {n} ch)", rel(g_jax, nhwc(img_t.grad)), 1e-4)
    return out


def maxpool_flips(probe, net, images: np.ndarray) -> int:  # noqa: ANN001
    """Max-pool windows (over ``images``) where jaxvis's and PyTorch's forward passes pick a
    different maximum (each on its own activations); 0 for a network without max pooling."""
    import torch
    import torch.nn.functional as F

    pools = [layer.name for layer in probe.layers if layer.kind == "MaxPool"]
    if not pools:
        return 0
    names = probe.layer_names
    feeding = [names[names.index(p) - 1] for p in pools]
    images = np.asarray(images, np.float32)
    acts = probe.activations(images, layers=feeding)
    seen: dict[str, np.ndarray] = {}
    hooks = [
        getattr(net, p).register_forward_hook(
            lambda m, inp, out, p=p: seen.__setitem__(p, inp[0].detach())
        )
        for p in pools
    ]
    try:
        with torch.no_grad():
            net(nchw(images))
    finally:
        for h in hooks:
            h.remove()
    flips = 0
    for p, f in zip(pools, feeding, strict=True):
        v = np.asarray(acts[f])  # NHWC, 2x2 windows, first maximum (jaxvis's MaxPool)
        n, h, w, c = v.shape
        win = v[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
        jax_idx = win.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4).argmax(-1)
        _, idx = F.max_pool2d(seen[p], 2, 2, return_indices=True)  # flat index into H x W
        idx = idx.numpy().transpose(0, 2, 3, 1)
        torch_idx = (idx // w % 2) * 2 + idx % w % 2
        flips += int((jax_idx != torch_idx).sum())
    return flips


# ----------------------------------------------------------------------------- timing


def ceilings(repeats: int, threads: tuple[int, ...]) -> str:
    """GFLOP/s of a float32 2048^3 matrix product in jax and in torch (median, interleaved)."""
    import jax
    import jax.numpy as jnp
    import torch

    n = 2048
    a = jnp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    mm = jax.jit(jnp.dot)
    at = torch.rand(n, n)

    def fj() -> None:
        mm(a, a).block_until_ready()

    for th in threads:
        torch.set_num_threads(th)
        fj()
        torch.mm(at, at)
    tj, *tt = time_interleaved(fj, lambda: torch.mm(at, at), repeats, threads)
    gf = 2.0 * n**3 / 1e9
    pairs = zip(threads, tt, strict=True)
    torch_part = ", ".join(f"torch {th} threads {gf / t:.0f}" for th, t in pairs)
    return f"jax {gf / tj:.0f}, {torch_part} GFLOP/s (median of {repeats})"


def time_interleaved(fj, ft, repeats: int, threads: tuple[int, ...]) -> list[float]:  # noqa: ANN001
    """Medians of ``repeats`` rounds of: jaxvis, then PyTorch at each thread count."""
    import torch

    times: list[list[float]] = [[] for _ in range(1 + len(threads))]
    for _ in range(repeats):
        t = time.perf_counter()
        fj()
        times[0].append(time.perf_counter() - t)
        for k, th in enumerate(threads):
            torch.set_num_threads(th)
            t = time.perf_counter()
            ft()
            times[k + 1].append(time.perf_counter() - t)
    torch.set_num_threads(threads[0])
    return [float(np.median(v)) for v in times]


def bench(work: Work, repeats: int, threads: tuple[int, ...], columns: int) -> list[tuple]:
    """Rows ``(network, batch, work, jaxvis s, [torch s per thread count], GFLOP)``."""
    import torch

    n = work.n
    tasks = [
        (f"IG {IG_STEPS} steps", work.jax_ig, work.torch_ig, IG_STEPS * n, 2 * work.flops),
        ("saliency", work.jax_saliency, work.torch_saliency, n, 2 * work.flops),
        (f"SmoothGrad {SG_SAMPLES}", work.jax_smoothgrad, work.torch_smoothgrad, SG_SAMPLES * n,
         2 * work.flops),
        (f"FV {work.fv_steps} steps {work.layer}", work.jax_fv, work.torch_fv,
         work.fv_steps * n, 2 * work.fv_flops),
    ]  # fmt: skip
    rows = []
    for label, fj, ft, points, fpp in tasks:
        for th in threads:  # warm up (jaxvis compiles; FV: two Lucent steps)
            torch.set_num_threads(th)
            if label.startswith("FV"):  # what render compiles: a 32-step scan, a short tail
                work.jax_fv(32 + work.fv_steps % 32 if work.fv_steps >= 32 else work.fv_steps)
                work.torch_fv(2)
            else:
                fj()
                ft()
        sj, *st = time_interleaved(fj, ft, repeats, threads)
        st += [None] * (columns - len(st))  # thread counts not timed here
        row = (work.name, n, label, sj, st, points * fpp / 1e9)
        rows.append(row)
        print(fmt_row(row), flush=True)
    return rows


def header(threads: tuple[int, ...]) -> str:
    pts = " ".join(f"{f'PT {t}thr s':>9s}" for t in threads)
    return (
        f"{'network':10s} {'batch':>5s} {'work':24s} {'jaxvis s':>9s} {pts} {'PT/jv':>6s} "
        f"{'best/jv':>7s} {'jv GF/s':>8s} {'PT GF/s':>8s}"
    )


def best_ratio(r: tuple) -> float:
    return min(t for t in r[4] if t is not None) / r[3]


def fmt_row(r: tuple) -> str:
    name, n, label, sj, st, gflop = r
    ratio = best_ratio(r)
    flag = "" if ratio >= 1.5 else ("  <1.5x" if ratio >= 1 else "  SLOWER")
    pts = " ".join(f"{t:9.3f}" if t is not None else f"{'-':>9s}" for t in st)
    return (
        f"{name:10s} {n:5d} {label:24s} {sj:9.3f} {pts} {st[0] / sj:6.2f} {ratio:7.2f} "
        f"{gflop / sj:8.1f} {gflop / (ratio * sj):8.1f}{flag}"
    )


# ----------------------------------------------------------------------------- compile time


def compile_probe(models: list[str], fv_steps: int) -> None:
    """Run in a fresh subprocess: the first and second call of each tool, batch 1."""
    import jax

    state = {"secs": 0.0, "n": 0, "hits": 0}

    def on_duration(event: str, duration: float, **kw) -> None:  # noqa: ANN003
        if event == "/jax/core/compile/backend_compile_duration":
            state["secs"] += duration
            state["n"] += 1

    def on_event(event: str, **kw) -> None:  # noqa: ANN003
        if event == "/jax/compilation_cache/cache_hits":
            state["hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    import jaxvis as jv

    results = []
    for name in models:
        probe, x, y, _ = load(name, 1)
        layer = FV_LAYER[name]
        tools = {
            "IG": lambda p=probe, x=x, y=y: jv.attribution.integrated_gradients(
                p, x, y, steps=IG_STEPS
            ).values.block_until_ready(),
            "saliency": lambda p=probe, x=x, y=y: jv.attribution.saliency(
                p, x, y
            ).values.block_until_ready(),
            "SmoothGrad": lambda p=probe, x=x, y=y: jv.attribution.smoothgrad(
                p, x, y, noise=SG_NOISE, samples=SG_SAMPLES
            ).values.block_until_ready(),
            "FV": lambda p=probe, layer=layer: jv.optvis.render(p, f"{layer}:0", steps=fv_steps),
        }
        for tool, fn in tools.items():
            before = dict(state)
            t = time.perf_counter()
            fn()
            first = time.perf_counter() - t
            after = dict(state)
            t = time.perf_counter()
            fn()
            second = time.perf_counter() - t
            results.append(
                {
                    "model": name,
                    "tool": tool,
                    "first": first,
                    "second": second,
                    "compile_s": after["secs"] - before["secs"],
                    "compiles": after["n"] - before["n"],
                    "hits": after["hits"] - before["hits"],
                }
            )
    cache = jax.config.jax_compilation_cache_dir
    print("COMPILE_JSON " + json.dumps({"cache": cache, "rows": results}), flush=True)


def compile_times(models: list[str], fv_steps: int) -> None:
    """Five fresh subprocesses: no persistent cache (``JAXVIS_COMPILATION_CACHE=0``); JAX's
    cache through ``JAX_COMPILATION_CACHE_DIR`` (min compile time 0), cold then warm; jaxvis's
    own cache setup pointed at another new folder (``JAXVIS_COMPILATION_CACHE=<dir>``), cold
    then warm."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "JAXVIS_COMPILATION"))}
    with (
        tempfile.TemporaryDirectory(prefix="jax-cache-") as jax_dir,
        tempfile.TemporaryDirectory(prefix="jaxvis-cache-") as jv_dir,
    ):
        jax_env = {
            "JAX_COMPILATION_CACHE_DIR": jax_dir,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        runs = [
            ("no cache", {"JAXVIS_COMPILATION_CACHE": "0"}),
            ("JAX cold", jax_env),
            ("JAX warm", jax_env),
            ("jaxvis cold", {"JAXVIS_COMPILATION_CACHE": jv_dir}),
            ("jaxvis warm", {"JAXVIS_COMPILATION_CACHE": jv_dir}),
        ]
        results = []
        for label, extra in runs:
            cmd = [sys.executable, os.path.abspath(__file__), "--compile-probe"]
            cmd += ["--models", *models, "--fv-steps", str(fv_steps)]
            t = time.perf_counter()
            proc = subprocess.run(
                cmd, env={**base, **extra}, capture_output=True, text=True, check=False
            )
            wall = time.perf_counter() - t
            data = None
            for ln in proc.stdout.splitlines():
                if ln.startswith("COMPILE_JSON "):
                    data = json.loads(ln[len("COMPILE_JSON ") :])
            if data is None:
                print(f"  {label}: subprocess failed:\n{proc.stderr[-2000:]}")
                return
            results.append((label, wall, data))
        files = [sum(len(f) for _, _, f in os.walk(d)) for d in (jax_dir, jv_dir)]
    print(
        f"first call at batch 1, each in a fresh subprocess (IG {IG_STEPS} steps, SmoothGrad "
        f"{SG_SAMPLES} samples, FV {fv_steps} steps). Per run: wall of the first call / XLA "
        "backend-compile seconds (compile events, persistent-cache hits); 2nd = wall of a second "
        "call in the no-cache run. Goal: first - 2nd < 1.5 s; warm runs compile nothing."
    )
    for label, wall, data in results:
        print(f"  {label:11s}: cache dir {data['cache']!r}, subprocess wall {wall:.1f} s")
    cols = " | ".join(f"{label:^22s}" for label, _, _ in results)
    print(f"  {'network':10s} {'tool':10s} | {cols} | {'2nd':>5s}")
    for k, r0 in enumerate(results[0][2]["rows"]):
        cells = []
        for _, _, data in results:
            r = data["rows"][k]
            cells.append(
                f"{r['first']:5.2f} / {r['compile_s']:4.2f} ({r['compiles']:2d},{r['hits']:2d})"
            )
        over = r0["first"] - r0["second"]
        flag = "" if over < 1.5 else "  > 1.5 s"
        print(
            f"  {r0['model']:10s} {r0['tool']:10s} | {' | '.join(f'{c:22s}' for c in cells)} "
            f"| {r0['second']:5.2f}{flag}"
        )
    print(f"  cache folders held {files[0]} (JAX) and {files[1]} (jaxvis) files at the end")


# ----------------------------------------------------------------------------- main


def load_line() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 1, 3 repeats, 64 FV steps")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5)")
    ap.add_argument("--fv-steps", type=int, default=None, help=f"default {FV_STEPS}")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--batches", nargs="+", type=int, default=None, help="default 1 16")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time runs")
    ap.add_argument(
        "--torch-threads",
        nargs="+",
        type=int,
        default=[2, 1],
        help="PyTorch thread counts timed (default 2 1: on a busy 2-core machine PyTorch's "
        "2 OpenMP threads can wait for each other on every small operation)",
    )
    ap.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    fv_steps = args.fv_steps or (64 if args.quick else FV_STEPS)
    batches = args.batches or ([1] if args.quick else [1, 16])
    threads = tuple(args.torch_threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.compile_probe:
        compile_probe(args.models, fv_steps)
        return

    import jax
    import torch

    torch.set_num_threads(2)
    import captum
    from _torch_nets import import_lucent

    import_lucent()
    tv = sys.modules.get("torchvision")
    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), captum {captum.__version__}, torch-lucent "
        f"(torchvision: {'shim' if getattr(tv, '__jaxvis_shim__', False) else 'installed'}); "
        f"{os.cpu_count()} cores, load average {load_line()}"
    )
    print(f"float32 2048^3 matmul ceiling: {ceilings(repeats, threads)}")

    print("agreement (PyTorch twin with copied weights vs jaxvis; 16 images, 4 for vgg128):")
    for name in args.models:
        probe, x, y, shift = load(name, 4 if name == "vgg128" else 16)
        for ln in checks(Work(name, probe, x, y, shift, fv_steps)):
            print(ln, flush=True)

    print(
        f"\ntimes: interleaved median of {repeats}, seconds per call; PyTorch with "
        f"{' and '.join(map(str, threads))} threads (torch.set_num_threads); PT/jv = PyTorch "
        f"({threads[0]} threads) s / jaxvis s, best/jv = fastest PyTorch s / jaxvis s (> 1: "
        "jaxvis faster; goal >= 1.5); GF/s = (forward + input gradient) FLOPs / s, PT GF/s of "
        "the fastest PyTorch"
    )
    print(header(threads))
    rows = []
    for name in args.models:
        for b in batches:
            probe, x, y, shift = load(name, b)
            big = name == "vgg128" and b >= 16 and not args.fv_steps and not args.quick
            steps = min(fv_steps, BIG_FV_STEPS) if big else fv_steps
            work = Work(name, probe, x, y, shift, steps)
            rows += bench(work, repeats, threads[:1] if big else threads, len(threads))
    slow = [r for r in rows if best_ratio(r) < 1.5]
    print(
        f"{len(rows) - len(slow)} of {len(rows)} rows reach 1.5x against the fastest PyTorch; "
        f"{sum(best_ratio(r) < 1 for r in rows)} slower; load average {load_line()}"
    )
    if not args.no_compile:
        print()
        compile_times(args.models, fv_steps)
    print(f"load average at the end: {load_line()} (2 cores; above ~2 other work shared them)")


if __name__ == "__main__":
    main()
