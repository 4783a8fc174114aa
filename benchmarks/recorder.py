"""Recorder cost: training steps/s with and without ``jv.Recorder``, and replay render time.

Prints, in one run:

* ``mnist_cnn`` training steps per second (the demo loop's jitted Adam step, batch 64, the
  seed's recorder settings: 10 probe digits, the six tanh layers, weight histograms) without
  the recorder and with it recording every step and every 10th step. Blocks of steps
  alternate (plain, recorded, plain, ...) so both see the same machine load; the medians of
  the blocks are compared (goal: overhead under 20% when recording every step);
* the bytes per recorded step and the estimate for the notebook's run;
* ``TrainingReplay``: building the widget (all frames rendered and PNG-encoded), then the
  time of one slider move (swap every layer's PNG, histogram and markers), per frame.

    .venv/bin/python benchmarks/recorder.py [--blocks 8] [--block-steps 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import numpy as np
from flax import nnx

import jaxvis as jv
from jaxvis.zoo.train import CONFIGS, make_optimizer
from jaxvis.zoo.watch import DEFAULT_LAYERS, _make_step, probe_examples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=8, help="blocks per variant")
    ap.add_argument("--block-steps", type=int, default=20, help="training steps per block")
    args = ap.parse_args()
    data = jv.zoo.load_data("mnist_cnn")
    bs = 64
    model = jv.zoo.build("mnist_cnn", 0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(CONFIGS["mnist_cnn"], 10_000)
    opt_state = tx.init(params)
    step_fn = _make_step(graphdef, tx)
    probe_x, probe_y = probe_examples(data.x_test, data.y_test, 10)
    layers, vrange = DEFAULT_LAYERS["mnist_cnn"]
    recorders = {
        every: jv.Recorder(
            probe_x, layers=layers, every=every, model=model, labels=probe_y, value_range=vrange
        )
        for every in (1, 10)
    }
    rng = np.random.default_rng(0)
    n = len(data.x_train)
    print(
        f"mnist_cnn, batch {bs}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"{os.cpu_count()} CPUs; {args.blocks} blocks of {args.block_steps} steps per variant"
    )

    step = 0

    def block(recorder: jv.Recorder | None) -> float:
        nonlocal params, opt_state, step
        batches = [rng.choice(n, bs, replace=False) for _ in range(args.block_steps)]
        t = time.perf_counter()
        for idx in batches:
            params, opt_state, loss, acc = step_fn(
                params, opt_state, data.x_train[idx], data.y_train[idx]
            )
            step += 1
            if recorder is not None:
                recorder.record(step, params, metrics={"loss": loss, "accuracy": acc})
        jax.block_until_ready(params)
        if recorder is not None:
            recorder.flush()  # include the host copy of what was recorded
        return args.block_steps / (time.perf_counter() - t)

    for rec in (None, *recorders.values()):  # compile everything first
        block(rec)
    rates: dict[str, list[float]] = {"plain": [], "every 1": [], "every 10": []}
    for _ in range(args.blocks):
        rates["plain"].append(block(None))
        rates["every 1"].append(block(recorders[1]))
        rates["every 10"].append(block(recorders[10]))
    base = statistics.median(rates["plain"])
    print(f"{'variant':<22}{'steps/s (median)':>18}{'min':>8}{'max':>8}{'vs plain':>10}")
    for name, xs in rates.items():
        med = statistics.median(xs)
        print(
            f"{'recorder ' + name if name != 'plain' else 'no recorder':<22}{med:>18.1f}"
            f"{min(xs):>8.1f}{max(xs):>8.1f}{med / base:>9.2f}x"
        )
    over = base / statistics.median(rates["every 1"]) - 1
    print(f"recorder overhead, every step: {100 * over:.1f}% of training time (goal < 20%)")
    r1 = recorders[1]
    print(
        f"bytes per recorded step: {r1.bytes_per_record(2) / 1e3:.1f} kB; notebook run "
        f"(3 epochs = 186 steps, every 1): {r1.estimate_bytes(186, 3) / 1e6:.1f} MB"
    )

    # ---- replay
    from jaxvis.widgets import TrainingReplay

    recording = r1.recording()
    t = time.perf_counter()
    replay = TrainingReplay(recording)
    build = time.perf_counter() - t
    n_frames = len(recording)
    print(
        f"TrainingReplay of {n_frames} steps x {len(recording.layers)} layers: built in "
        f"{build:.2f} s ({1e3 * build / n_frames:.1f} ms per step, frames pre-rendered)"
    )
    times = []
    for i in rng.permutation(n_frames)[:100]:
        t = time.perf_counter()
        replay.slider.value = int(i)
        times.append(time.perf_counter() - t)
    ms = sorted(1e3 * x for x in times)
    print(
        f"slider move (swap {len(recording.layers)} PNGs + histogram + markers): median "
        f"{statistics.median(ms):.2f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.2f} ms per frame"
    )
    t = time.perf_counter()
    frame = replay.render_frame(0, recording.layers[0])
    jv.render.png_bytes(frame)
    print(
        f"rendering one layer frame from scratch (grid + colormap + PNG): "
        f"{1e3 * (time.perf_counter() - t):.2f} ms"
    )
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
