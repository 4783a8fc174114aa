"""Benchmark integrated gradients on the zoo models (50 Gauss-Legendre steps, batch of 16).

Prints, in one run: the compile time of the first call, images per second afterwards, and the
speed ratio against a naive baseline in the same run (a Python loop over the 50 alphas, one
jitted gradient call each). If ``torch`` and ``captum`` are installed (``pip install
jaxvis[bench]``), also runs Captum's ``IntegratedGradients`` on the same network with the same
weights (rebuilt layer by layer, weights transposed to PyTorch's layout), checks that the
logits agree to 1e-4 and the attributions to 1e-3 of their largest value (1e-5 except where a
max-pool window ties to float32 rounding at some interpolation point), and prints
interleaved median timings and the speed ratio (``torch.set_num_threads(2)``).

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
    bench_captum(name, zoo, x, y, res)


def bench_captum(name: str, zoo, x: np.ndarray, y: np.ndarray, res) -> None:  # noqa: ANN001
    """Captum's IntegratedGradients on a PyTorch twin of the network, same weights and inputs.

    Same inputs, targets, baseline (black = zeros), 50 Gauss-Legendre nodes and the same points
    per model call (``batch_size`` / Captum's ``internal_batch_size``, a whole number of
    steps of the batch). Timings are interleaved (jaxvis, Captum, then jaxvis with its own
    batch size and Captum in one batch) and the median of the repeats is reported.
    """
    try:
        import torch
        from captum.attr import IntegratedGradients
    except ImportError:
        print(
            f"{name}: Captum comparison skipped "
            "(torch/captum not installed: pip install jaxvis[bench])"
        )
        return
    torch.set_num_threads(2)
    try:
        net = torch_twin(name, zoo.probe)
    except NotImplementedError as err:
        print(f"{name}: Captum comparison skipped ({err})")
        return

    xt = torch.tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    yt = torch.tensor(y).long()
    with torch.no_grad():
        out = net(xt).numpy()
    out_err = float(np.abs(out - np.asarray(zoo.probe(x))).max())
    print(
        f"{name}: PyTorch twin vs jaxvis logits: max abs diff {out_err:.1e} "
        f"({'agree' if out_err < 1e-4 else 'DISAGREE'}, tolerance 1e-4)"
    )
    if not out_err < 1e-4:
        return

    # the same points per model call on both sides: Captum chunks whole steps of the batch
    # (internal_batch_size // BATCH steps, at least one), so round jaxvis's own choice to that
    auto_bs = int(res.settings["batch_size"])
    common = max(1, auto_bs // BATCH) * BATCH
    ig = IntegratedGradients(net)

    def captum(internal_batch_size: int | None):  # noqa: ANN202
        return ig.attribute(
            xt,
            baselines=torch.zeros_like(xt),
            target=yt,
            n_steps=STEPS,
            method="gausslegendre",
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )

    values, delta = captum(common)
    got = np.transpose(values.detach().numpy(), (0, 2, 3, 1))
    ours = np.asarray(res.values)
    abs_err = float(np.abs(got - ours).max())
    rel_err = abs_err / float(np.abs(ours).max())
    per_image = np.abs(got - ours).reshape(len(x), -1).max(1) / np.abs(ours).reshape(
        len(x), -1
    ).max(1)
    exact = int((per_image < 1e-5).sum())
    delta_err = float(np.abs(delta.detach().numpy() - np.asarray(res.delta)).max())
    print(
        f"{name}: Captum vs jaxvis IG ({STEPS} gausslegendre steps, black baseline, true "
        f"class): max abs diff {abs_err:.1e}, relative to max |IG| {rel_err:.1e} "
        f"({'agree' if rel_err < 1e-3 else 'DISAGREE'}, tolerance 1e-3); {exact} of {len(x)} "
        f"images agree to 1e-5 (worst image {per_image.max():.1e}); completeness deltas "
        f"differ by at most {delta_err:.1e} (median |f(x) - f(0)| "
        f"{float(np.median(np.abs(np.asarray(res.score - res.baseline_score)))):.2f})"
    )
    if exact < len(x):
        bad = np.flatnonzero(per_image >= 1e-5)
        gap = _closest_maxpool_tie(zoo.probe, x[bad])
        if gap is not None:
            print(
                f"{name}: images {bad.tolist()} differ more: over their interpolation points the "
                f"closest max-pool near-tie is {gap:.1e} apart, within float32 rounding, so XLA "
                "and PyTorch may send that node's gradient to different pixels"
            )

    def run_jax(batch_size: int | None):  # noqa: ANN202
        out = integrated_gradients(zoo.probe, x, y, steps=STEPS, batch_size=batch_size)
        return jax.block_until_ready(out.values)

    runs = {
        "jaxvis": lambda: run_jax(common),
        "captum": lambda: captum(common),
        "jaxvis_auto": lambda: run_jax(None),
        "captum_one_batch": lambda: captum(None),
    }
    for fn in runs.values():  # warm up (and compile)
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(REPEATS):
        for key, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}

    def rate(key: str) -> str:
        return f"{1000 * med[key]:.0f} ms = {BATCH / med[key]:.1f} images/s"

    print(
        f"{name}: interleaved median of {REPEATS}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, {common} points per model call on both sides: "
        f"jaxvis {rate('jaxvis')}, Captum {rate('captum')}; also jaxvis with its own "
        f"batch_size {auto_bs}: {rate('jaxvis_auto')}, Captum in one batch of "
        f"{STEPS * BATCH}: {rate('captum_one_batch')}"
    )
    best_captum = min(med["captum"], med["captum_one_batch"])
    print(
        f"{name}: speed ratio jaxvis/Captum {med['captum'] / med['jaxvis']:.2f}x at "
        f"{common} points per call; jaxvis default vs Captum's faster setting "
        f"{best_captum / med['jaxvis_auto']:.2f}x (> 1: jaxvis faster)"
    )


def _closest_maxpool_tie(probe, x: np.ndarray) -> float | None:  # noqa: ANN001
    """Smallest non-zero gap between the two largest inputs of any 2x2 max-pool window, over
    the IG interpolation points ``alpha * x`` (None when the model has no max pooling)."""
    names = probe.layer_names
    feeding = [names[i - 1] for i, layer in enumerate(probe.layers) if layer.kind == "MaxPool"]
    if not feeding:
        return None
    best = np.inf
    for alpha in nodes("gausslegendre", STEPS)[0]:
        acts = probe.activations(np.float32(alpha) * x, layers=feeding)
        for v in acts.values():
            v = np.asarray(v)
            n, h, w, c = v.shape
            win = v[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
            top = np.sort(win.transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4), axis=-1)
            gaps = top[:, -1] - top[:, -2]
            if (gaps > 0).any():
                best = min(best, float(gaps[gaps > 0].min()))
    return best


def torch_twin(name: str, probe):  # noqa: ANN001, ANN202
    """The zoo network rebuilt in PyTorch from the probe's layers and weights (see
    ``_torch_nets.torch_twin``; ``shapes_cnn`` centres its input inside the model)."""
    from _torch_nets import INPUT_SHIFT
    from _torch_nets import torch_twin as twin

    return twin(probe, INPUT_SHIFT.get(name, 0.0))


def main() -> None:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores "
        f"(load average {load}: timings are only comparable on a quiet machine)"
    )
    for name in ("mnist_cnn", "shapes_cnn"):
        bench_model(name)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at the end: {load} (above ~2 other work shared the 2 cores)")


if __name__ == "__main__":
    main()
