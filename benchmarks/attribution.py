"""Benchmark integrated gradients on the zoo models (50 Gauss-Legendre steps, batch of 16).

Prints, in one run: the compile time of the first call, images per second afterwards, and the
speed ratio against a naive baseline in the same run (a Python loop over the 50 alphas, one
jitted gradient call each). If ``torch`` and ``captum`` are installed (``pip install
jaxvis[bench]``), also runs Captum's ``IntegratedGradients`` on the same network with the same
weights (rebuilt layer by layer, weights transposed to PyTorch's layout), checks that the
logits agree to 1e-4 and the attributions to 1e-3 of their largest value (1e-5 except where a
max-pool window ties to float32 rounding at some interpolation point), and prints
interleaved median timings and the speed ratio (``torch.set_num_threads(2)``).

Then the faithfulness metrics (batch of 16, saliency maps): images/s of deletion/insertion
(32 steps), ``infidelity`` (10 perturbations) and ``sensitivity_max`` (10 perturbations, of the
saliency map) against Captum's ``infidelity`` / ``sensitivity_max`` on the same twin with the
same perturbations (values checked to agree), and against Quantus's ``PixelFlipping``,
``Infidelity`` and ``MaxSensitivity`` (its own per-sample loops, its default settings:
its Infidelity replaces every 4x4 patch in turn, ~50 model calls per perturbation, so it does
far more work than Captum's formula) where ``import quantus`` works; and images/s of every
method in the registry (``jv.attribution.methods()``) with its default options. Timings:
median of interleaved repeats.

Usage::

    python benchmarks/attribution.py            # JAXVIS_FAST=1 for fewer repeats
    python benchmarks/attribution.py --quick    # metrics and methods only, 3 repeats, 8 images
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

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


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per run, the runs interleaved, after one warm-up (compile) each."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[key].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def import_quantus():  # noqa: ANN201
    """``quantus``, or None with the reason printed. Quantus imports zennit when it finds it,
    and zennit imports torchvision (absent here: its wheels would replace the CPU torch), so
    zennit is hidden while quantus is imported (only its LRP explainers need it)."""
    hidden = "zennit" not in sys.modules
    if hidden:
        sys.modules["zennit"] = None  # type: ignore[assignment]  # find_spec -> None
    try:
        import quantus
    except ImportError as err:
        print(f"Quantus comparison skipped: import quantus failed ({err})")
        return None
    finally:
        if hidden:
            del sys.modules["zennit"]
    return quantus


def _per_step(n_pixels: int) -> int:
    """Pixels per step dividing ``n_pixels`` (Quantus needs that), about 32 steps in all."""
    return min((d for d in range(1, n_pixels + 1) if n_pixels % d == 0),
               key=lambda d: abs(n_pixels / d - 32))  # fmt: skip


def bench_metrics(name: str, batch: int, repeats: int) -> None:
    """Faithfulness metrics on saliency maps: jaxvis vs Captum vs Quantus, images/s."""
    from jaxvis.attribution import deletion, infidelity, insertion, saliency, sensitivity_max

    zoo = jv.zoo.load(name)
    x, y = zoo.x_test[:batch], zoo.y_test[:batch].astype(np.int32)
    a = np.asarray(saliency(zoo.probe, x, y).values)
    steps = x.shape[1] * x.shape[2] // _per_step(x.shape[1] * x.shape[2])
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal((batch, 10, *x.shape[1:]))).astype(np.float32)
    moves = rng.uniform(-0.02, 0.02, (batch, 10, *x.shape[1:])).astype(np.float32)
    runs: dict[str, Callable[[], object]] = {
        "deletion": lambda: deletion(zoo.probe, x, a, y, steps=steps).auc,
        "insertion": lambda: insertion(zoo.probe, x, a, y, steps=steps).auc,
        "infidelity": lambda: infidelity(zoo.probe, x, a, y, noise=noise),
        "sensitivity_max": lambda: sensitivity_max(zoo.probe, x, y, noise=moves),
    }
    check: dict[str, str] = {}
    try:
        import torch
        from captum.attr import Saliency
        from captum.metrics import infidelity as c_infidelity
        from captum.metrics import sensitivity_max as c_sensitivity

        torch.set_num_threads(2)
        net = torch_twin(name, zoo.probe).eval()
        nchw = lambda v: torch.tensor(np.ascontiguousarray(np.moveaxis(v, -1, -3)))  # noqa: E731
        xt, yt, at = nchw(x), torch.tensor(y).long(), nchw(a)
        flat_noise = nchw(noise.reshape(-1, *x.shape[1:]))
        flat_moves = nchw(moves.reshape(-1, *x.shape[1:]))
        sal = Saliency(net)

        def captum_infidelity():  # noqa: ANN202
            return c_infidelity(
                net, lambda z: (flat_noise, z - flat_noise), xt, at, target=yt, n_perturb_samples=10
            )

        def captum_sensitivity():  # noqa: ANN202
            return c_sensitivity(
                sal.attribute, xt, perturb_func=lambda z, r: z + flat_moves,
                n_perturb_samples=10, target=yt,
            )  # fmt: skip

        runs["captum_infidelity"] = lambda: captum_infidelity().numpy()
        runs["captum_sensitivity_max"] = lambda: captum_sensitivity().numpy()
        for ours, theirs in (("infidelity", "captum_infidelity"),
                             ("sensitivity_max", "captum_sensitivity_max")):  # fmt: skip
            want, got = np.asarray(runs[theirs]()), np.asarray(runs[ours]())
            err = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-12)))
            check[ours] = f"max rel diff vs Captum {err:.1e}"
        quantus = import_quantus()
        if quantus is not None:
            add_quantus(quantus, runs, net, x, y, a)
    except ImportError as err:
        print(f"{name}: Captum comparison skipped ({err})")
    med = _interleaved(runs, repeats)
    for key in ("deletion", "insertion", "infidelity", "sensitivity_max"):
        line = f"{name}: {key:16s} jaxvis {batch / med[key]:8.1f} images/s"
        for ref in ("captum", "quantus"):
            other = f"{ref}_{key}"
            if key in ("deletion", "insertion") and ref == "quantus":
                other = "quantus_pixel_flipping"
            if other in med:
                line += f"; {ref} {batch / med[other]:7.1f} images/s ({med[other] / med[key]:.1f}x)"
        if key in check:
            line += f"; {check[key]}"
        print(line)


def add_quantus(quantus, runs, net, x, y, a) -> None:  # noqa: ANN001
    """Quantus's PixelFlipping (32 steps), Infidelity and MaxSensitivity (10 samples each) on
    the same twin and saliency maps (its own per-sample loops)."""
    xq = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    aq = np.abs(a).sum(-1)[:, None]  # Quantus works on (N, 1, H, W) maps
    h, w = x.shape[1:3]
    flip = quantus.PixelFlipping(
        features_in_step=_per_step(h * w), perturb_baseline="black", disable_warnings=True
    )
    infid = quantus.Infidelity(n_perturb_samples=10, disable_warnings=True)
    sens = quantus.MaxSensitivity(nr_samples=10, lower_bound=0.02, disable_warnings=True)
    kwargs = {"model": net, "x_batch": xq, "y_batch": y, "a_batch": aq, "device": "cpu"}
    explain = {"explain_func": quantus.explain, "explain_func_kwargs": {"method": "Saliency"}}
    runs["quantus_pixel_flipping"] = lambda: flip(**kwargs)
    runs["quantus_infidelity"] = lambda: infid(**kwargs)
    runs["quantus_sensitivity_max"] = lambda: sens(**kwargs, **explain)


def bench_methods(name: str, batch: int, repeats: int) -> None:
    """images/s of every registered method that applies to the model, default options."""
    zoo = jv.zoo.load(name)
    x, y = zoo.x_test[:batch], zoo.y_test[:batch].astype(np.int32)
    vit = bool(jv.attribution.attention_layers(zoo.probe))
    names = [n for n, m in jv.attribution.methods().items() if m.family != "attention" or vit]
    runs = {
        n: (lambda n=n: jv.attribution.attribute(zoo.probe, x, y, method=n).values) for n in names
    }
    med = _interleaved(runs, repeats)
    rates = ", ".join(f"{n} {batch / med[n]:.1f}" for n in names)
    print(f"{name}: images/s per registered method (batch {batch}, defaults): {rates}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="metrics and methods, 3 repeats")
    quick = parser.parse_args().quick
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores "
        f"(load average {load}: timings are only comparable on a quiet machine)"
    )
    batch, repeats = (8, 3) if quick else (BATCH, REPEATS)
    for name in ("mnist_cnn", "shapes_cnn"):
        if not quick:
            bench_model(name)
        bench_metrics(name, batch, repeats)
        bench_methods(name, batch, repeats)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average at the end: {load} (above ~2 other work shared the 2 cores)")


if __name__ == "__main__":
    main()
