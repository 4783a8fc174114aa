"""Benchmark the relevance family: images/s of jaxvis's LRP and DeepLift against zennit's LRP
and Captum's DeepLift on the same networks, in one run.

Networks: the zoo's ``mnist_cnn`` and ``shapes_cnn`` (trained; PyTorch twins with the same
weights, ``benchmarks/_torch_nets.py``) and ResNet-18 at 224x224 (random weights: jaxvis's
Linen ``jv.zoo.resnet18``, the torchvision-layout twin of ``tests/_torch_twins.py``). Each
timing is the median of ``REPEATS`` runs, the libraries interleaved run by run, after one
warm-up call (jaxvis's compile is printed separately). PyTorch runs with
``--torch-threads`` threads (default 1: on the shared 2-core machine, with a load average
far above 2, two OpenMP threads made one PyTorch gradient of ``mnist_cnn`` take 1-3 s
instead of 1.4 ms).

On the ResNet, zennit runs without canonisation: the twin is not torchvision's class, so
zennit's ``ResNetCanonizer`` does not apply and its BatchNorms and skip additions take the
gradient (timing only; jaxvis folds BatchNorm and splits the additions).

Usage::

    python benchmarks/attribution_relevance.py --quick     # batch 1 and 4 (ResNet-18: 1)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxvis as jv
from jaxvis.attribution import deeplift, lrp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _median_interleaved(fns: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _zoo_nets(name: str):  # noqa: ANN202
    from _torch_nets import INPUT_SHIFT, torch_twin

    zoo = jv.zoo.load(name)
    return zoo.probe, torch_twin(zoo.probe, INPUT_SHIFT.get(name, 0.0)), zoo.x_test


def _resnet18():  # noqa: ANN202
    from _torch_twins import ResNet, randomise

    module = jv.zoo.resnet18(num_classes=1000)
    variables = jv.zoo.init_variables(module, seed=0, input_shape=(224, 224, 3), batch_size=2)
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3), call_kwargs={"train": False})
    net = _separate_relus(randomise(ResNet("basic", [2, 2, 2, 2], 1000), 0))
    for p in net.parameters():
        p.requires_grad_(False)
    x = np.random.default_rng(0).uniform(0, 1, (4, 224, 224, 3)).astype(np.float32)
    return probe, net, x


def _separate_relus(net):  # noqa: ANN001, ANN202
    """The twin with one non-inplace ReLU module per use: Captum's DeepLift hooks a module
    once (the torchvision layout calls a block's ``relu`` twice)."""
    import types

    from _torch_twins import BasicBlock
    from torch import nn

    def forward(self, x):  # noqa: ANN001, ANN202
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu_out(y + (x if self.downsample is None else self.downsample(x)))

    for module in net.modules():
        if isinstance(module, BasicBlock):
            module.relu, module.relu_out = nn.ReLU(), nn.ReLU()
            module.forward = types.MethodType(forward, module)
    net.relu = nn.ReLU()
    return net


def bench(name: str, probe, net, images: np.ndarray, batch: int, repeats: int) -> None:  # noqa: ANN001
    import torch
    from _zennit_shim import zennit  # noqa: F401
    from captum.attr import DeepLift
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox

    x = images[:batch]
    target = np.zeros(batch, np.int32)
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    lo, hi = float(np.min(probe.input_low)), float(np.max(probe.input_high))
    composite = EpsilonGammaBox(low=lo, high=hi)
    n_out = net(xt).shape[-1]
    onehot = torch.nn.functional.one_hot(torch.tensor(target).long(), n_out).float()

    # zennit's hooks are registered once (its context manager), outside the timings
    attributor = Gradient(model=net, composite=composite)
    attributor.__enter__()

    def zennit_lrp():  # noqa: ANN202
        return attributor(xt.clone().requires_grad_(True), lambda out: onehot * out)[1]

    dl = DeepLift(net)
    base_t = torch.zeros_like(xt)

    def captum_dl():  # noqa: ANN202
        return dl.attribute(xt.clone().requires_grad_(True), base_t, target=torch.tensor(target))

    def ours_lrp():  # noqa: ANN202
        return jax.block_until_ready(lrp(probe, x, target, composite="epsilon_gamma_box").values)

    def ours_dl():  # noqa: ANN202
        return jax.block_until_ready(deeplift(probe, x, target, baseline="zero").values)

    t = time.perf_counter()
    ours_lrp()
    c_lrp = time.perf_counter() - t
    t = time.perf_counter()
    ours_dl()
    c_dl = time.perf_counter() - t
    zennit_lrp()
    captum_dl()
    med = _median_interleaved(
        {
            "jaxvis lrp": ours_lrp,
            "zennit lrp": zennit_lrp,
            "jaxvis dl": ours_dl,
            "captum dl": captum_dl,
        },
        repeats,
    )
    rate = {k: batch / v for k, v in med.items()}
    print(
        f"{name:>10} batch {batch}: LRP eps-gamma-box jaxvis {rate['jaxvis lrp']:8.1f} img/s, "
        f"zennit {rate['zennit lrp']:8.1f} img/s, x{rate['jaxvis lrp'] / rate['zennit lrp']:.2f} "
        f"(compile {c_lrp:.1f} s) | DeepLift jaxvis {rate['jaxvis dl']:8.1f} img/s, "
        f"Captum {rate['captum dl']:8.1f} img/s, x{rate['jaxvis dl'] / rate['captum dl']:.2f} "
        f"(compile {c_dl:.1f} s)",
        flush=True,
    )


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes")
    parser.add_argument(
        "--models", default="mnist_cnn,shapes_cnn,resnet18", help="comma-separated subset"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    models = args.models.split(",")
    repeats = 5
    torch.set_num_threads(args.torch_threads)
    for name in [m for m in models if m != "resnet18"]:
        probe, net, images = _zoo_nets(name)
        for batch in (1, 4) if args.quick else (1, 4, 16):
            bench(name, probe, net, images, batch, repeats)
    if "resnet18" in models:
        probe, net, images = _resnet18()
        for batch in (1,) if args.quick else (1, 4):
            bench("resnet18", probe, net, images, batch, repeats)


if __name__ == "__main__":
    main()
