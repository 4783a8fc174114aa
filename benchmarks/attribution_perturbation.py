"""Benchmark the perturbation family against Captum on the zoo models (same weights).

For ``mnist_cnn`` and ``shapes_cnn``, on the same batch: occlusion (window 6, stride 3),
feature ablation and KernelSHAP over the same 4 x 4 grid of segments (KernelSHAP: the same
number of coalitions, each library drawing its own). Captum runs on the PyTorch twin of the
network (``benchmarks/_torch_nets.py``), at 1 and at 2 threads (the faster is reported), with
``perturbations_per_eval`` set to jaxvis's points per model call. Each pair is timed
interleaved, median of 5 runs (3 with ``--quick``) after a warm-up call (jaxvis's compile),
and printed as images/s and the ratio; occlusion and feature ablation also print the largest
difference from Captum's attribution.

Usage::

    python benchmarks/attribution_perturbation.py            # batch 16
    python benchmarks/attribution_perturbation.py --quick    # batch 4, fewer samples
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jaxvis as jv  # noqa: E402

A = jv.attribution


def _run(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(getattr(out, "values", out))
    return time.perf_counter() - t


def _pair(jax_fn, torch_fn, repeats: int) -> tuple[float, float, int]:  # noqa: ANN001
    """Median seconds of jaxvis and of Captum at its faster thread count (1 or 2), all runs
    interleaved. On a loaded machine PyTorch's 2 threads can run 10x slower than 1 (its
    workers wait for each other at every operation), so both are measured."""
    import torch

    jax_fn(), torch_fn()
    a, b = [], {1: [], 2: []}
    for _ in range(repeats):
        a.append(_run(jax_fn))
        for threads, times in b.items():
            torch.set_num_threads(threads)
            times.append(_run(torch_fn))
    threads = min(b, key=lambda t: statistics.median(b[t]))
    return statistics.median(a), statistics.median(b[threads]), threads


def bench(name: str, batch: int, samples: int, repeats: int) -> None:
    import torch
    from _torch_nets import INPUT_SHIFT, torch_twin
    from captum.attr import FeatureAblation, KernelShap, Occlusion

    zoo = jv.zoo.load(name)
    probe = zoo.probe
    x = np.asarray(zoo.x_test[:batch], np.float32)
    y = np.asarray(zoo.y_test[:batch]).astype(np.int64)
    net = torch_twin(probe, INPUT_SHIFT.get(name, 0.0))
    xt = torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    yt = torch.tensor(y)
    c = x.shape[-1]
    labels = A.segment(probe, x, "grid", n_segments=16)
    mask = torch.tensor(labels[:, None]).long()

    def nhwc(t) -> np.ndarray:  # noqa: ANN001
        return np.transpose(t.detach().numpy(), (0, 2, 3, 1))

    def per_eval(res) -> int:  # noqa: ANN001
        return max(1, res.settings["batch_size"] // batch)

    occ = A.occlusion(probe, x, y, window=6, stride=3)
    occ_ppe = per_eval(occ)
    abl = A.feature_ablation(probe, x, y, segments=labels)
    abl_ppe = per_eval(abl)
    shap = A.kernel_shap(probe, x, y, segments=labels, samples=samples)
    shap_ppe = per_eval(shap)
    rows = {
        "occlusion": (
            lambda: A.occlusion(probe, x, y, window=6, stride=3),
            lambda: Occlusion(net).attribute(
                xt, (c, 6, 6), strides=(1, 3, 3), baselines=0.0, target=yt,
                perturbations_per_eval=occ_ppe,
            ),
            occ,
        ),
        "feature ablation": (
            lambda: A.feature_ablation(probe, x, y, segments=labels),
            lambda: FeatureAblation(net).attribute(
                xt, baselines=0.0, target=yt, feature_mask=mask, perturbations_per_eval=abl_ppe
            ),
            abl,
        ),
        f"KernelSHAP ({samples})": (
            lambda: A.kernel_shap(probe, x, y, segments=labels, samples=samples),
            lambda: torch.cat([
                KernelShap(net).attribute(
                    xt[i : i + 1], baselines=0.0, target=yt[i : i + 1],
                    feature_mask=mask[i : i + 1], n_samples=samples,
                    perturbations_per_eval=shap_ppe,
                )
                for i in range(batch)
            ]),
            None,
        ),
    }  # fmt: skip
    for label, (jax_fn, torch_fn, res) in rows.items():
        ours, theirs, threads = _pair(jax_fn, torch_fn, repeats)
        diff = ""
        if res is not None:
            ref = nhwc(torch_fn())
            gap = np.abs(np.asarray(res.values) - ref).max() / max(np.abs(ref).max(), 1e-12)
            diff = f"  max |diff| {gap:.1e} of max"
        print(
            f"{name:11s} {label:18s} jaxvis {batch / ours:9.1f} img/s   Captum "
            f"{batch / theirs:9.1f} img/s ({threads} thr)   x{theirs / ours:6.2f}{diff}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, 64 coalitions, 3 runs")
    parser.add_argument("--models", nargs="+", default=["mnist_cnn", "shapes_cnn"])
    args = parser.parse_args()
    batch, samples, repeats = (4, 64, 3) if args.quick else (16, 256, 5)
    print(
        f"batch {batch}, median of {repeats} interleaved runs, Captum at its faster of 1/2 threads"
    )
    for name in args.models:
        bench(name, batch, samples, repeats)


if __name__ == "__main__":
    main()
