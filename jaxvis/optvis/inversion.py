"""Feature inversion and caricatures: an image whose activations at a layer match a real one's.

Mahendran & Vedaldi (2015) reconstruct an input from a layer's activations; Lucid's caricature
maximises ``dot(a, t) * cos(a, t) ** power`` between the activations ``a`` of the optimised
image and the activations ``t`` of the real image at the same layer (whole tensors, every
position). The dot product rewards matching *and exceeding* the real activations, the cosine
power keeps the direction: with a high power the result is a reconstruction, with a low one a
caricature that exaggerates what the layer sees. Early layers keep almost everything (the
reconstruction looks like the input), deep ones keep what the model needs for its decision.

All layers of a strip are optimised in one vectorised run of :func:`jaxvis.optvis.render`:
image ``i`` matches layer ``i`` (a masked sum of one ``match`` objective per layer), so a
strip compiles one program. The real image's activations are traced values of the objective:
inverting another image of the same shape compiles nothing new.

Example::

    zoo = jv.zoo.load("shapes_cnn")
    inv = jv.optvis.invert(zoo.probe, zoo.x_test[0], layers=["act1", "act3", "act5"])
    inv.images.shape          # (3, 32, 32, 3): one reconstruction per layer
    inv.ssim                  # structural similarity of each with the input
    inv                       # in a notebook: the strip (input, then one image per layer)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvis import render as _render
from jaxvis.attribution.metrics import ssim as _ssim
from jaxvis.optvis.engine import RenderResult, render
from jaxvis.optvis.objectives import Kind, Objective, register
from jaxvis.optvis.param import ImageParam, pixel

__all__ = ["InversionResult", "Match", "invert", "match"]

#: Lucid's floor on the cosine before the power: a direction opposite to the target still has
#: a gradient towards it instead of a vanishing one.
COS_FLOOR = 0.1


@register
class Match(Kind):
    """``w * dot(a, t) / |t| * max(cos(a, t), 0.1) ** power`` per image at one layer.

    Traced values, one row per image: ``t`` the target activations ``(N, *layer shape)``,
    ``w`` a weight ``(N,)`` (a one-hot mask in a strip), ``power`` ``(N,)``.
    """

    name, traced = "match", ("t", "w", "power")

    def score(self, act: jax.Array, v: Mapping[str, jax.Array]) -> jax.Array:
        a, t = act.reshape(-1), v["t"].reshape(-1)
        dot = jnp.sum(a * t) / (jnp.linalg.norm(t) + 1e-8)
        cos = dot / (jnp.linalg.norm(a) + 1e-8)
        return v["w"] * dot * jnp.maximum(cos, COS_FLOOR) ** v["power"]

    def check(self, layer: str | None, v: dict[str, Any], shape: tuple[int, ...]) -> None:
        got = tuple(v["t"].shape[1:])
        if got != tuple(shape):
            raise ValueError(
                f"target activations have shape {got} but layer {layer!r} has {tuple(shape)}"
            )

    def describe(self, obj: Objective) -> str:
        return f"match({obj.layer}, power={float(np.asarray(obj.values['power'])[0]):g})"


def match(layer: str, target: Any, power: float = 1.0, weight: Any = None) -> Objective:
    """Objective: make ``layer``'s activations point along ``target`` (a batch ``(N, ...)``).

    Example::

        t = probe.activations(x[:1], "act3")["act3"]
        obj = match("act3", t, power=2.0)      # one image; render(probe, obj)
    """
    if not isinstance(layer, str) or not layer:
        raise TypeError(f"layer must be a layer name (str), got {layer!r}")
    t = jnp.asarray(target, jnp.float32)
    if t.ndim < 2:
        raise ValueError(f"target must be a batch (N, *layer shape), got shape {t.shape}")
    n = int(t.shape[0])
    w = jnp.ones((n,), jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32)
    if w.shape != (n,):
        raise ValueError(f"weight must have shape ({n},), got {w.shape}")
    p = _power(power)
    power_per_image = jnp.full((n,), p, jnp.float32)
    return Objective("match", layer, {"t": t, "w": w, "power": power_per_image}, n)


@dataclass
class InversionResult:
    """What :func:`invert` returns.

    Attributes:
        layers: the inverted layers, one image each.
        images: ``(L, H, W, C)`` reconstructions in ``[0, 1]``.
        target: the input image in ``[0, 1]`` ``(H, W, C)``.
        ssim: ``(L,)`` structural similarity of each reconstruction with ``target`` (mean over
            colour channels, :func:`jaxvis.attribution.metrics.ssim`).
        render: the underlying :class:`~jaxvis.optvis.RenderResult`.
    """

    layers: list[str]
    images: np.ndarray
    target: np.ndarray
    ssim: np.ndarray
    render: RenderResult

    def strip(self, scale: int | None = None) -> np.ndarray:
        """uint8 RGB strip: the input, then one reconstruction per layer."""
        tiles = np.concatenate([self.target[None], self.images])
        if tiles.shape[-1] not in (1, 3):
            tiles = tiles[..., :1]
        h = tiles.shape[1]
        scale = scale or max(1, -(-96 // h))
        return _render.grid(tiles, ncols=len(tiles), normalize="none", spacing=2, scale=scale)

    def _repr_png_(self) -> bytes:
        return _render.png_bytes(self.strip())

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}: {s:.2f}" for n, s in zip(self.layers, self.ssim, strict=True))
        return f"InversionResult(ssim {{{pairs}}})"


def invert(
    probe: Any,
    image: Any,
    layers: Sequence[str] | str,
    *,
    steps: int = 256,
    power: float = 6.0,
    param: ImageParam | str | None = None,
    transforms: Any = None,
    lr: float | None = 0.05,
    seed: int = 0,
    callback: Any = None,
) -> InversionResult:
    """Reconstruct ``image`` from its activations at each of ``layers`` (a strip, one run).

    Args:
        probe: a :class:`jaxvis.Probe`.
        image: one input ``(H, W, C)`` (or ``(1, H, W, C)``) in the model's input range.
        layers: a layer name or a list of them; one reconstruction each.
        steps: optimisation steps.
        power: the cosine power (Lucid's ``cossim_pow``). The default 6 reconstructs (measured
            on the zoo models: SSIM about 0.9 at the first layer); 0 maximises the plain dot
            product (the strongest caricature), 1-2 gives Lucid's caricatures. Above ~8 a deep
            layer can stall at the cosine floor.
        param: the image parameterisation (default: pixels with a sigmoid, which give the
            sharpest reconstructions at small sizes); see :func:`jaxvis.optvis.render`.
        transforms: random transforms while optimising (default none: a reconstruction is
            compared pixel by pixel; Lucid's ``"standard"`` gives a looser caricature).
        lr, seed, callback: as for :func:`jaxvis.optvis.render`.

    Example::

        inv = invert(probe, x[0], ["act1", "act5"], steps=128)
        inv.ssim            # e.g. [0.9, 0.3]: early layers keep the picture
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"layers must be a layer name or a non-empty list of names, got {layers!r}"
        )
    x = np.asarray(image, np.float32)
    if x.ndim == len(probe.input_shape or ()) + 1 and x.shape[0] == 1:
        x = x[0]
    if probe.input_shape is not None and tuple(x.shape) != tuple(probe.input_shape):
        raise ValueError(
            f"image must have the model's input shape {tuple(probe.input_shape)} (or a batch "
            f"of one), got {tuple(np.shape(image))}"
        )
    _power(power)
    acts = probe.activations(x[None], names)  # validates names (suggestions) and the input
    n = len(names)
    terms = []
    for i, name in enumerate(names):
        t = jnp.broadcast_to(acts[name], (n, *acts[name].shape[1:]))
        terms.append(match(name, t, power, weight=np.eye(n, dtype=np.float32)[i]))
    objective = sum(terms[1:], terms[0])
    res = render(
        probe,
        objective,
        steps=steps,
        seed=seed,
        param=param if param is not None else pixel(squash="sigmoid"),
        transforms=transforms,
        lr=lr,
        callback=callback,
    )
    lo, hi = np.asarray(probe.input_low), np.asarray(probe.input_high)
    target = np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    scores = np.asarray([image_ssim(img, target) for img in res.images], np.float32)
    return InversionResult(names, res.images, target, scores, res)


def image_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two ``(H, W, C)`` images in ``[0, 1]``: the mean over their channels."""
    return float(np.mean([_ssim(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


def _power(power: Any) -> float:
    if isinstance(power, bool) or not isinstance(power, (int, float, np.number)):
        raise TypeError(f"power must be a number >= 0, got {power!r}")
    if not np.isfinite(power) or power < 0:
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    return float(power)
