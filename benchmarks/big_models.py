"""jaxvis on a ResNet-50 and a ViT-S/16 at 224x224 against PyTorch and plain JAX (issue 13).

The same random weights on all sides: a PyTorch twin (``tests/_torch_twins.py``: torchvision's
ResNet layout, timm's ViT) is randomised, and its ``state_dict`` goes through
``jv.zoo.load_checkpoint`` into the zoo's Linen modules. Before timing, the logits and the
input gradients of the two frameworks are compared. Then, interleaved (jaxvis, plain JAX,
PyTorch, jaxvis, ...), the median of the repeats of:

* saliency, batch 1: ``jv.attribution.saliency`` / a jitted ``jax.grad`` / Captum ``Saliency``;
* IG, 50 Gauss-Legendre nodes from a zero baseline (Captum's default), batch 1 and 16:
  ``integrated_gradients`` / a Python loop over a
  jitted ``jax.grad`` of chunks of the same size as jaxvis's (the plain JAX a user would
  write) / Captum's ``IntegratedGradients`` (``internal_batch_size`` = the same chunk);
* SmoothGrad, 16 samples, batch 1: ``smoothgrad`` / the same plain loop over noisy copies /
  Captum's ``NoiseTunnel(Saliency)``;
* 256 feature-visualisation steps of one channel and of 16 channels of one layer (ResNet-50:
  ``layer3_0``; ViT: ``Transformer.encoderblock_5``): ``jv.optvis.render`` with a sigmoid pixel
  parameterisation, no transforms, no penalties, Adam 0.05 / a jitted optax Adam step in a
  Python loop reading the layer with Linen's ``capture_intermediates`` / the same loop in
  PyTorch (``torch.optim.Adam``, the layer read by a forward hook). Lucent is not used: its
  default Fourier parameterisation and transforms would not be the same work.

Printed per row: seconds per call of each, PyTorch / jaxvis (goal >= 1.5) and plain JAX /
jaxvis (goal >= 1.0), and the runs the median is of. Before that, the first call of each tool
(trace + compile + run; the compile cache off), wall and CPU seconds, and the loop jaxvis
chose. ``os.getloadavg()`` is printed with every block: on the shared 2-core machine the
timings move with the load, the ratios (interleaved) much less.

By default batch 16 runs IG with 4 nodes and FV with 4 steps, and one-channel FV 32 steps
(:data:`B16_IG_STEPS`, :data:`B16_FV_STEPS`, :data:`DEFAULT_FV_STEPS`): the issue's 50 and
256 take minutes per run on 2 cores; ``--full`` runs them.

Usage::

    .venv/bin/python benchmarks/big_models.py            # both models, about ten minutes
    .venv/bin/python benchmarks/big_models.py --quick    # 2 runs per row, no batch 16
    .venv/bin/python benchmarks/big_models.py --full     # batch 16 at IG 50 / FV 256 (long)
    .venv/bin/python benchmarks/big_models.py --models resnet50 --repeats 5

A row runs fewer than ``--repeats`` times when one round of it takes more than
``--row-seconds`` / repeats (printed), so that the default run stays around ten minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAXVIS_COMPILATION_CACHE", "0")  # first calls compile for real

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

import jaxvis as jv  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IG_STEPS, SG_SAMPLES, SG_NOISE, FV_STEPS, TARGET = 50, 16, 0.15, 256, 3
#: steps of the batch-16 rows by default (``--full``: IG 50, FV 256). On 2 cores IG 50 at batch 16
#: (800 model calls with gradient) takes minutes per run on each side, 16-channel FV 256 steps
#: over ten, one-channel FV 256 steps about a minute; with fewer steps the rows show the same
#: per-step ratios, and the default run fits in about ten minutes.
B16_IG_STEPS, B16_FV_STEPS = 4, 4
#: feature-visualisation steps of one channel by default (``--full``: 256)
DEFAULT_FV_STEPS = 32
FV_LAYER = {"resnet50": "layer3_0", "vit_s16": "Transformer.encoderblock_5"}


def load_line() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def build(arch: str):  # noqa: ANN201
    import _torch_twins as twins

    if arch == "resnet50":
        twin = twins.ResNet("bottleneck", [3, 4, 6, 3], 1000)
    else:
        twin = twins.VisionTransformer(224, 16, 384, 12, 6, 1536, 1000)
    twin = twins.randomise(twin, 0)
    for p in twin.parameters():
        p.requires_grad_(False)
    module, variables = jv.zoo.load_checkpoint(dict(twin.state_dict()), arch)
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3), mean=MEAN, std=STD)
    return probe, module, variables, twin


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def block(out):  # noqa: ANN001, ANN201
    return jax.block_until_ready(out)


# ------------------------------------------------------------------ the three implementations


class Work:
    def __init__(self, arch: str) -> None:
        self.arch = arch
        self.probe, self.module, self.variables, self.twin = build(arch)
        rng = np.random.default_rng(0)
        self.x1 = rng.normal(size=(1, 224, 224, 3)).astype(np.float32)
        self.x16 = rng.normal(size=(16, 224, 224, 3)).astype(np.float32)
        self.lo, self.hi = self.probe.input_low, self.probe.input_high
        apply = self.module.apply

        def score(v: dict, x: jax.Array, t: jax.Array) -> jax.Array:
            return jnp.take_along_axis(apply(v, x), t[:, None], 1).sum()

        # the variables are an argument, as in jaxvis (a closure would bake them in as
        # constants, which jaxvis never does: see docs/design.md, "Performance rules")
        grad = jax.jit(jax.grad(score, argnums=1))
        self.plain_grad = lambda x, t: grad(self.variables, x, t)

    # jaxvis
    def jv_saliency(self) -> None:
        block(jv.attribution.saliency(self.probe, self.x1, TARGET).values)

    def jv_ig(self, x: np.ndarray, steps: int = IG_STEPS) -> None:
        res = jv.attribution.integrated_gradients(
            self.probe, x, TARGET, baseline="zero", steps=steps
        )  # Captum's default baseline, and the plain loop's
        block(res.values)

    def jv_sg(self) -> None:
        res = jv.attribution.smoothgrad(
            self.probe, self.x1, TARGET, noise=SG_NOISE, samples=SG_SAMPLES
        )
        block(res.values)

    def jv_fv(self, n: int, steps: int = FV_STEPS) -> None:
        obj = jv.optvis.objectives.channel(FV_LAYER[self.arch], list(range(n)))
        jv.optvis.render(
            self.probe,
            obj,
            steps=steps,
            param=jv.optvis.param.pixel(squash="sigmoid"),
            transforms=None,
            regularizers=jv.optvis.regularizers.Regularizers(),
            lr=0.05,
        )

    # plain JAX: a jitted jax.grad in a Python loop over chunks
    def plain_saliency(self) -> None:
        block(jnp.abs(self.plain_grad(self.x1, np.full((1,), TARGET, np.int32))))

    def plain_ig(self, x: np.ndarray, chunk: int, steps: int = IG_STEPS) -> None:
        a, w = jv.attribution.nodes("gausslegendre", steps)
        n = x.shape[0]
        pts = (a[:, None, None, None, None] * x[None]).reshape(-1, *x.shape[1:])
        wts = np.repeat(w, n).astype(np.float32)
        t = np.full((chunk,), TARGET, np.int32)
        total = np.zeros_like(x)
        for i in range(0, len(pts), chunk):
            p, ww = pts[i : i + chunk], wts[i : i + chunk]
            if len(p) < chunk:
                pad = chunk - len(p)
                p = np.concatenate([p, np.zeros((pad, *p.shape[1:]), np.float32)])
                ww = np.concatenate([ww, np.zeros(pad, np.float32)])
            g = np.asarray(self.plain_grad(p, t)) * ww[:, None, None, None]
            idx = np.arange(i, i + chunk) % n
            np.add.at(total, idx[: len(g)], g)
        block(x * total)

    def plain_sg(self, chunk: int) -> None:
        sigma = SG_NOISE * (self.hi - self.lo)
        eps = np.random.default_rng(1).normal(size=(SG_SAMPLES, 224, 224, 3)).astype(np.float32)
        pts = self.x1 + sigma * eps
        t = np.full((chunk,), TARGET, np.int32)
        total = 0.0
        for i in range(0, SG_SAMPLES, chunk):
            total = total + self.plain_grad(pts[i : i + chunk], t).sum(0)
        block(total / SG_SAMPLES)

    def plain_fv(self, n: int, steps: int = FV_STEPS) -> None:
        if not hasattr(self, "_plain_fv"):
            self._plain_fv = {}
        if n not in self._plain_fv:
            layer = FV_LAYER[self.arch]
            apply, lo, hi = self.module.apply, self.lo, self.hi
            opt = optax.adam(0.05)
            chans = jnp.arange(n)

            def loss(p: jax.Array, v: dict) -> jax.Array:
                x = lo + (hi - lo) * jax.nn.sigmoid(p)
                _, state = apply(
                    v,
                    x,
                    capture_intermediates=lambda m, name: ".".join(m.scope.path) == layer,
                    mutable=["intermediates"],
                )
                act = jax.tree.leaves(state["intermediates"])[0]
                act = act.reshape(n, -1, act.shape[-1])
                return -jnp.sum(jnp.take_along_axis(act, chans[:, None, None], -1).mean((1, 2)))

            @jax.jit
            def step(p: jax.Array, s: optax.OptState, v: dict) -> tuple:
                g = jax.grad(loss)(p, v)
                u, s = opt.update(g, s, p)
                return optax.apply_updates(p, u), s

            self._plain_fv[n] = (step, opt)
        step, opt = self._plain_fv[n]
        p = jnp.asarray(0.01 * np.random.default_rng(0).normal(size=(n, 224, 224, 3)), jnp.float32)
        s = opt.init(p)
        for _ in range(steps):
            p, s = step(p, s, self.variables)
        block(p)

    # PyTorch (Captum for the attributions)
    def torch_saliency(self) -> None:
        from captum.attr import Saliency

        Saliency(self.twin).attribute(nchw(self.x1).requires_grad_(), target=TARGET)

    def torch_ig(self, x: np.ndarray, chunk: int, steps: int = IG_STEPS) -> None:
        from captum.attr import IntegratedGradients

        IntegratedGradients(self.twin).attribute(
            nchw(x), target=TARGET, n_steps=steps, method="gausslegendre",
            internal_batch_size=chunk,
        )  # fmt: skip

    def torch_sg(self, chunk: int) -> None:
        from captum.attr import NoiseTunnel, Saliency

        sigma = float(np.mean(SG_NOISE * (self.hi - self.lo)))
        NoiseTunnel(Saliency(self.twin)).attribute(
            nchw(self.x1), nt_type="smoothgrad", nt_samples=SG_SAMPLES, stdevs=sigma,
            nt_samples_batch_size=chunk, target=TARGET, abs=False,
        )  # fmt: skip

    def torch_fv(self, n: int, steps: int = FV_STEPS) -> None:
        layer = FV_LAYER[self.arch]
        if self.arch == "resnet50":
            stage, idx = layer.split("_")
            mod = getattr(self.twin, stage)[int(idx)]
        else:
            mod = self.twin.blocks[int(layer.rsplit("_", 1)[1])]
        seen = {}
        hook = mod.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
        lo = torch.tensor(self.lo).reshape(1, 3, 1, 1)
        hi = torch.tensor(self.hi).reshape(1, 3, 1, 1)
        p = torch.from_numpy(
            (0.01 * np.random.default_rng(0).normal(size=(n, 3, 224, 224))).astype(np.float32)
        ).requires_grad_()
        opt = torch.optim.Adam([p], lr=0.05)
        chans = torch.arange(n)
        try:
            for _ in range(steps):
                opt.zero_grad()
                self.twin(lo + (hi - lo) * torch.sigmoid(p))
                a = seen["a"]
                if a.ndim == 4:  # NCHW
                    v = a[torch.arange(n), chans].mean((1, 2))
                else:  # tokens (N, T, D)
                    v = a[torch.arange(n), :, chans].mean(1)
                (-v.sum()).backward()
                opt.step()
        finally:
            hook.remove()


# ------------------------------------------------------------------ checks


def agreement(w: Work) -> str:
    x = w.x1
    with torch.no_grad():
        lt = w.twin(nchw(x)).numpy()
    lj = np.asarray(w.probe(x))
    xt = nchw(x).requires_grad_()
    w.twin(xt)[:, TARGET].sum().backward()
    gt = xt.grad.numpy().transpose(0, 2, 3, 1)
    gj = np.asarray(jv.attribution.saliency(w.probe, x, TARGET, abs=False).values)
    ig_t = (
        __import__("captum.attr", fromlist=["IntegratedGradients"])
        .IntegratedGradients(w.twin)
        .attribute(nchw(x), target=TARGET, n_steps=8, method="gausslegendre")
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    ig_j = jv.attribution.integrated_gradients(w.probe, x, TARGET, baseline="zero", steps=8)
    ig_j = np.asarray(ig_j.values)

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

    return (
        f"agreement with PyTorch (max |diff| / max |PyTorch|): logits {rel(lj, lt):.1e}, "
        f"input gradient {rel(gj, gt):.1e}, IG (8 steps) {rel(ig_j, ig_t):.1e}"
    )


# ------------------------------------------------------------------ timing


def first_calls(w: Work, rows: list[tuple]) -> list[str]:
    out = []
    for name, fj, _, _ in rows:
        t, c = time.perf_counter(), time.process_time()
        fj()
        out.append(
            f"  {name:<24} first call {time.perf_counter() - t:6.2f} s wall, "
            f"{time.process_time() - c:6.2f} s CPU"
        )
    return out


def time_rows(rows: list[tuple], repeats: int, row_seconds: float, warm: bool) -> list[str]:
    torch.set_num_threads(2)
    out = []
    for name, fj, fp, ft in rows:
        if warm:
            fj()
        fp()  # warm the plain-JAX compile and torch
        ft()
        times: dict[str, list[float]] = {"jv": [], "jax": [], "torch": []}
        runs = repeats
        r = 0
        while r < runs:
            for key, f in (("jv", fj), ("jax", fp), ("torch", ft)):
                t = time.perf_counter()
                f()
                times[key].append(time.perf_counter() - t)
            if r == 0:
                one = sum(v[0] for v in times.values())
                runs = max(1, min(repeats, int(row_seconds // max(one, 1e-9))))
            r += 1
        med = {k: float(np.median(v)) for k, v in times.items()}
        out.append(
            f"  {name:<24} jaxvis {med['jv']:7.3f} s  plain JAX {med['jax']:7.3f} s  "
            f"PyTorch {med['torch']:7.3f} s   PyTorch/jaxvis {med['torch'] / med['jv']:5.2f}  "
            f"plainJAX/jaxvis {med['jax'] / med['jv']:5.2f}   ({runs} runs, {load_line()})"
        )
        print(out[-1], flush=True)
    return out


def make_rows(w: Work, plans: dict, quick: bool, full: bool) -> list[tuple]:
    """(name, jaxvis, plain JAX, PyTorch) callables per row."""
    c_ig1, c_ig16, c_sg = (plans[k].chunk for k in ("IG b1", "IG b16", "SG b1"))
    ig16 = IG_STEPS if full else B16_IG_STEPS
    fv16 = FV_STEPS if full else B16_FV_STEPS
    fv1 = FV_STEPS if full else DEFAULT_FV_STEPS
    rows = [
        ("saliency b1", w.jv_saliency, w.plain_saliency, w.torch_saliency),
        (
            f"IG {IG_STEPS} b1",
            lambda: w.jv_ig(w.x1),
            lambda: w.plain_ig(w.x1, c_ig1),
            lambda: w.torch_ig(w.x1, c_ig1),
        ),
        ("SmoothGrad 16 b1", w.jv_sg, lambda: w.plain_sg(c_sg), lambda: w.torch_sg(c_sg)),
        (
            f"FV {fv1} steps, 1 ch",
            lambda: w.jv_fv(1, fv1),
            lambda: w.plain_fv(1, fv1),
            lambda: w.torch_fv(1, fv1),
        ),
    ]
    if not quick:
        rows.insert(
            2,
            (
                f"IG {ig16} b16",
                lambda: w.jv_ig(w.x16, ig16),
                lambda: w.plain_ig(w.x16, c_ig16, ig16),
                lambda: w.torch_ig(w.x16, c_ig16, ig16),
            ),
        )
        rows.append(
            (
                f"FV {fv16} steps, 16 ch",
                lambda: w.jv_fv(16, fv16),
                lambda: w.plain_fv(16, fv16),
                lambda: w.torch_fv(16, fv16),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs a row, no batch 16")
    parser.add_argument("--full", action="store_true", help="batch 16: IG 50 and FV 256 steps")
    parser.add_argument("--models", default="resnet50,vit_s16")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--row-seconds", type=float, default=None)
    parser.add_argument("--skip-first", action="store_true", help="no first-call block")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    row_seconds = args.row_seconds or (20.0 if args.quick else 30.0)
    print(f"jax {jax.__version__}, torch {torch.__version__}, {load_line()}", flush=True)
    from jaxvis import _plan

    for arch in args.models.split(","):
        w = Work(arch)
        print(f"\n== {arch} at 224x224 ({load_line()})", flush=True)
        plans = {
            "IG b1": _plan.plan(w.probe, "integrated_gradients", (224, 224, 3), IG_STEPS, None),
            "IG b16": _plan.plan(
                w.probe,
                "integrated_gradients",
                (224, 224, 3),
                (IG_STEPS if args.full else B16_IG_STEPS) * 16,
                None,
            ),
            "SG b1": _plan.plan(w.probe, "smoothgrad", (224, 224, 3), SG_SAMPLES, None),
        }
        print("  loops chosen: " + ", ".join(f"{k} {v.mode}/{v.chunk}" for k, v in plans.items()))
        rows = make_rows(w, plans, args.quick, args.full)
        if not args.skip_first:
            print("first calls (trace + compile + one run, no persistent cache):")
            for line in first_calls(w, rows):
                print(line, flush=True)
        print("  " + agreement(w), flush=True)
        print("timings, median of interleaved runs (goals: PyTorch/jaxvis >= 1.5, ", end="")
        print("plainJAX/jaxvis >= 1.0):")
        time_rows(rows, repeats, row_seconds, args.skip_first)


if __name__ == "__main__":
    main()
