"""Top-k speed and memory: images/s on 1 and 4 devices, peak memory for 5,000 vs 50,000 images.

Each measurement runs in a fresh Python process (the device count is fixed when JAX starts;
peak RSS is per process): ``jv.dataset.top_k`` over the 5,000 MNIST digits of the zoo,
repeated 1, 10 or 20 times as a stream of batches (the same arrays yielded again, so the input
itself takes no extra memory), through ``mnist_cnn``'s layer ``act5``. Printed per run:

* images per second of the timed pass (after a warm-up pass that compiles);
* peak RSS of the process (``resource.getrusage(...).ru_maxrss``) before and after the pass;
* the peak of JAX's live device buffers (``jax.live_arrays()``), sampled at every batch;
* the peak of the host memory allocated by Python and numpy during a second, traced pass
  (``tracemalloc``: what the pass itself holds, free of the allocator's arenas and caches,
  which make RSS wander by tens of MB from run to run on 2 busy cores).

Then the ratios: 4 forced host devices vs 1 on 50,000 images
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on the same cores: the sharded step's
overhead, not a speed-up, when the cores are shared), and 50,000 and 100,000 vs 5,000 images
for memory, which must stay ~1: only the running top-k is kept (RSS moves by tens of MB between
runs as the allocator's arenas warm up).

    .venv/bin/python benchmarks/topk.py [--layer act5] [--batch 500] [--repeats 1 10 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def worker(devices: int, repeats: int, layer: str, batch: int) -> dict:
    import resource
    import time
    import tracemalloc

    import jax
    import numpy as np

    import jaxvis as jv

    assert len(jax.devices()) == devices, jax.devices()
    zoo = jv.zoo.load("mnist_cnn")
    base = np.concatenate([zoo.x_train, zoo.x_test])
    chunks = [base[i : i + batch] for i in range(0, len(base), batch)]
    live_peak = [0]
    rss_trace: list[float] = []

    def stream(n_repeats: int):
        for r in range(n_repeats):
            if r % 2 == 0:
                rss_trace.append(_rss_now_mb())
            for chunk in chunks:
                live = sum(a.nbytes for a in jax.live_arrays())
                live_peak[0] = max(live_peak[0], live)
                yield chunk

    jv.dataset.top_k(zoo.probe, stream(1), layer, k=9, progress=False)  # compile, warm up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    live_peak[0] = 0
    rss_trace.clear()
    t0 = time.perf_counter()
    res = jv.dataset.top_k(zoo.probe, stream(repeats), layer, k=9, progress=False)
    seconds = time.perf_counter() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trace = list(rss_trace)
    tracemalloc.start()
    jv.dataset.top_k(zoo.probe, stream(repeats), layer, k=9, progress=False)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "devices": res.n_devices,
        "images": res.n_images,
        "seconds": seconds,
        "images_per_s": res.n_images / seconds,
        "rss_before_mb": rss_before / 1024,
        "rss_after_mb": rss_after / 1024,
        "live_peak_mb": live_peak[0] / 2**20,
        "traced_peak_mb": traced_peak / 2**20,
        "rss_trace_mb": trace,
    }


def _rss_now_mb() -> float:
    """The process's current resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(devices: int, repeats: int, layer: str, batch: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env.pop("JAX_PLATFORMS", None)
    args = [sys.executable, __file__, "--worker", str(devices), str(repeats), layer, str(batch)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from jaxvis.dataset.topk import MAX_IN_FLIGHT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="act5")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, nargs="+", default=(1, 10, 20))
    a = parser.parse_args()
    mb = a.batch * 28 * 28 * 4 / 2**20
    print(
        f"top-9 of mnist_cnn's {a.layer}, batches of {a.batch} ({mb:.2f}MB each), "
        f"{os.cpu_count()} CPU cores"
    )
    head = ("devices", 7), ("images", 8), ("seconds", 8), ("images/s", 9), ("RSS before", 11)
    head += ("RSS peak", 9), ("JAX live peak", 14), ("host heap peak", 15)
    print(" ".join(f"{name:>{width}}" for name, width in head))
    results = {}
    for devices in (1, 4):
        for repeats in a.repeats:
            r = run(devices, repeats, a.layer, a.batch)
            results[devices, repeats] = r
            print(
                f"{r['devices']:>7} {r['images']:>8,} {r['seconds']:>8.2f} "
                f"{r['images_per_s']:>9,.0f} {r['rss_before_mb']:>9.0f}MB "
                f"{r['rss_after_mb']:>7.0f}MB {r['live_peak_mb']:>12.2f}MB "
                f"{r['traced_peak_mb']:>13.2f}MB"
            )
    small, large = a.repeats[0], a.repeats[1]
    for devices, big in ((d, b) for d in (1, 4) for b in a.repeats[1:]):
        s, g = results[devices, small], results[devices, big]
        print(
            f"{devices} device(s): {g['images']:,} vs {s['images']:,} images: peak RSS x"
            f"{g['rss_after_mb'] / s['rss_after_mb']:.3f}, growth during the pass "
            f"{g['rss_after_mb'] - g['rss_before_mb']:+.0f}MB vs "
            f"{s['rss_after_mb'] - s['rss_before_mb']:+.0f}MB, JAX live peak x"
            f"{g['live_peak_mb'] / s['live_peak_mb']:.3f}, host heap peak "
            f"{s['traced_peak_mb'] / mb:.1f} -> {g['traced_peak_mb'] / mb:.1f} batches"
        )
    for devices in (1, 4):
        r = results[devices, a.repeats[-1]]
        trace = " ".join(f"{v:.0f}" for v in r["rss_trace_mb"])
        print(f"{devices} device(s), RSS (MB) every 10,000 of {r['images']:,} images: {trace}")
    print(
        f"(the host heap holds at most ~{MAX_IN_FLIGHT} steps in flight, each with its padded "
        "batch until copied, plus the batch being prepared: a bound, not a growth)"
    )
    one, four = results[1, large], results[4, large]
    ratio = four["images_per_s"] / one["images_per_s"]
    print(f"4 forced host devices vs 1 on the same cores: x{ratio:.2f} images/s")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        d, rep, lay, bat = sys.argv[2:6]
        print(json.dumps(worker(int(d), int(rep), lay, int(bat))))
    else:
        main()
