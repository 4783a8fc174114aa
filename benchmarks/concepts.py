"""Concepts benchmarks, ratios against a baseline in the same run:

* NMF (jaxvis HALS, jitted) vs ``sklearn.decomposition.NMF`` (coordinate descent) on
  ``shapes_cnn``'s ``act5`` (+1, ELU >= -1) with the same K and start (NNDSVDa): objective
  ``0.5 ||X - WH||^2`` and wall time, cold (compile included) and warm;
* SAE training throughput (samples, i.e. positions/tokens, per second) on 1 vs 4 forced host
  devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, each in a fresh process: the
  device count is fixed when JAX starts; on the same shared cores this measures the sharded
  step's overhead, not a speed-up);
* concept feature visualisation: K concepts in one vectorised run vs one run per concept.

    .venv/bin/python benchmarks/concepts.py [--k 8 16] [--samples 20000] [--sae-steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def sae_worker(steps: int, samples: int) -> dict:
    import jax

    import jaxvis as jv

    zoo = jv.zoo.load("shapes_cnn")
    ds = jv.concepts.activations(
        zoo.probe, zoo.x_train[:1000], "act5", max_samples=samples, progress=False
    )
    kw = dict(k=16, batch_size=1024, chunk=50, progress=False)
    jv.concepts.fit(ds, 256, method="topk", steps=50, **kw)  # compile
    t0 = time.perf_counter()
    sae = jv.concepts.fit(ds, 256, method="topk", steps=steps, **kw)
    dt = time.perf_counter() - t0
    m = jv.concepts.sae_metrics(sae, ds)
    return {"devices": len(jax.devices()), "samples_per_s": steps * 1024 / dt, "r2": m["r2"]}


def run_sae(devices: int, steps: int, samples: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("JAX_PLATFORMS", None)
    out = subprocess.run(
        [sys.executable, __file__, "--sae-worker", str(steps), str(samples)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--sae-steps", type=int, default=300)
    ap.add_argument("--fv-steps", type=int, default=64)
    ap.add_argument("--sae-worker", nargs=2, type=int)
    args = ap.parse_args()
    if args.sae_worker:
        print(json.dumps(sae_worker(*args.sae_worker)))
        return

    import warnings

    from sklearn.decomposition import NMF

    import jaxvis as jv

    zoo = jv.zoo.load("shapes_cnn")
    ds = jv.concepts.activations(
        zoo.probe, zoo.x_train[:1000], "act5", max_samples=args.samples, progress=False
    )
    x = ds.samples + 1.0
    print(f"NMF on act5 + 1: {x.shape[0]} x {x.shape[1]}")
    print(
        f"{'K':>4} {'jaxvis obj':>12} {'sklearn obj':>12} {'obj ratio':>10} "
        f"{'cold s':>8} {'warm s':>8} {'sklearn s':>10} {'speed-up (warm)':>16}"
    )
    for k in args.k:
        t0 = time.perf_counter()
        jv.concepts.fit(x, k, method="nmf")
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = jv.concepts.fit(x, k, method="nmf")
        warm = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            sk = NMF(k, init="nndsvda", max_iter=500, tol=1e-5).fit(x)
            theirs = time.perf_counter() - t0
        ref = 0.5 * sk.reconstruction_err_**2
        obj = ours.info["objective"]
        print(
            f"{k:4d} {obj:12.5g} {ref:12.5g} {obj / ref:10.4f} {cold:8.2f} {warm:8.2f} "
            f"{theirs:10.2f} {theirs / warm:15.1f}x"
        )

    print("\nSAE (TopK, 256 latents, k=16, batch 1024) training throughput")
    one = run_sae(1, args.sae_steps, args.samples)
    four = run_sae(4, args.sae_steps, args.samples)
    for r in (one, four):
        print(f"  {r['devices']} device(s): {r['samples_per_s']:10.0f} samples/s  R² {r['r2']:.3f}")
    print(f"  4 vs 1 devices: {four['samples_per_s'] / one['samples_per_s']:.2f}x")

    print(f"\nfeature visualisation of K concepts ({args.fv_steps} steps)")
    semi = jv.concepts.fit(ds, 8, method="seminmf")
    for which in ([0], list(range(8))):  # compile both shapes first (same steps and chunks)
        jv.concepts.feature_vis(zoo.probe, semi, which=which, steps=args.fv_steps)
    t0 = time.perf_counter()
    jv.concepts.feature_vis(zoo.probe, semi, steps=args.fv_steps)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for j in range(8):
        jv.concepts.feature_vis(zoo.probe, semi, which=[j], steps=args.fv_steps)
    serial = time.perf_counter() - t0
    print(f"  8 at once {batched:.2f}s   one by one {serial:.2f}s   ratio {serial / batched:.1f}x")


if __name__ == "__main__":
    main()
