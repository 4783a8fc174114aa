"""``jv.Recording``: what a :class:`~jaxvis.training.Recorder` saw, step by step.

A recording holds, for every recorded training step: the activations of the probe images in
the chosen layers (float16), a histogram of every parameter array on bins fixed for the whole
run, summary statistics of every parameter array, and the metrics passed to ``record``. It is
saved as one uncompressed ``.npz`` without pickle, written atomically (a temp file beside the
target, then ``os.replace``), and loaded with ``allow_pickle=False``.

Example::

    rec = recorder.recording()         # or jv.Recording.load("run.npz")
    rec.steps                          # (T,) recorded step numbers
    rec.activations["act3"].shape      # (T, N, 14, 14, 8) float16
    rec.histograms["conv3.kernel"]     # (T, bins) counts, summing to conv3's kernel size
    rec.stat("conv3.kernel", "norm")   # (T,) L2 norm over the run
    rec.save("run.npz")
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from jaxvis._files import atomic_write

__all__ = ["STATS", "TB_PERCENTILES", "Recording"]

#: Columns of :attr:`Recording.stats` arrays, in order.
STATS: tuple[str, ...] = ("mean", "std", "norm", "min", "max")
#: The percentiles of TensorBoard's distribution view (0, ±1.5σ, ±1σ, ±0.5σ, median of a normal).
TB_PERCENTILES: tuple[float, ...] = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)

FORMAT = "jaxvis.recording"
VERSION = 1


@dataclass(eq=False)
class Recording:
    """A recorded training run (see the module docstring).

    Attributes:
        steps: ``(T,)`` int64 step numbers, increasing.
        images: ``(N, H, W, C)`` float32 probe images.
        activations: ``{layer: (T, N, *layer shape)}`` float16.
        metrics: ``{name: (T,)}`` float64, NaN where a step had no value.
        histograms: ``{array: (T, bins)}`` int32 counts; values outside the bins are counted in
            the first or last bin, so each row sums to the array's size.
        bin_edges: ``{array: (bins + 1,)}`` float32 edges, the same for every step.
        stats: ``{array: (T, 5)}`` float32, columns :data:`STATS` (mean, std, norm, min, max).
        labels: ``(N,)`` labels of the probe images, or None.
        meta: JSON-able settings: ``every``, ``value_range``, ``class_names``, ``layer_kinds``...
    """

    steps: np.ndarray
    images: np.ndarray
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    bin_edges: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return int(len(self.steps))

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers with recorded activations, in call order."""
        return tuple(self.activations)

    @property
    def weight_keys(self) -> tuple[str, ...]:
        """The parameter arrays with histograms (``"conv1.kernel"``, ...)."""
        return tuple(self.histograms)

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays held (about the size of the saved file)."""
        return sum(int(a.nbytes) for a in self._arrays().values())

    def index(self, step: int) -> int:
        """Position of recorded ``step`` in :attr:`steps`; ValueError if it was not recorded."""
        hits = np.flatnonzero(self.steps == int(step))
        if not len(hits):
            near = self.steps[np.argsort(np.abs(self.steps - int(step)))[:3]].tolist()
            raise ValueError(f"step {step} was not recorded; nearest recorded steps: {near}")
        return int(hits[0])

    def stat(self, key: str, name: str) -> np.ndarray:
        """``(T,)`` values of statistic ``name`` (one of :data:`STATS`) of array ``key``."""
        self._check_key(key)
        if name not in STATS:
            raise ValueError(f"name must be one of {STATS}, got {name!r}")
        return self.stats[key][:, STATS.index(name)]

    def percentiles(self, key: str, qs: tuple[float, ...] = TB_PERCENTILES) -> np.ndarray:
        """``(T, len(qs))`` percentiles of array ``key`` at every step, read off its histograms.

        Linear interpolation inside a bin; 0 and 100 are the exact min and max, and values in
        the edge bins are spread between the true extreme and the bin's inner edge. This is
        what TensorBoard's distribution view draws.

        Example::

            bands = rec.percentiles("dense1.kernel")     # (T, 9)
        """
        self._check_key(key)
        counts = self.histograms[key].astype(np.float64)
        edges = self.bin_edges[key].astype(np.float64)
        lo, hi = self.stat(key, "min").astype(np.float64), self.stat(key, "max").astype(np.float64)
        out = np.empty((len(counts), len(qs)))
        for t in range(len(counts)):
            e = edges.copy()
            e[0], e[-1] = min(e[0], lo[t]), max(e[-1], hi[t])
            cdf = np.concatenate([[0.0], np.cumsum(counts[t])])
            cdf /= max(cdf[-1], 1.0)
            vals = np.interp(np.asarray(qs) / 100.0, cdf, e)
            out[t] = np.clip(vals, lo[t], hi[t])
        return out

    def _check_key(self, key: str) -> None:
        if key not in self.histograms:
            raise ValueError(f"unknown parameter array {key!r}: recorded {list(self.histograms)}")

    def __repr__(self) -> str:
        span = f"steps {self.steps[0]}..{self.steps[-1]}" if len(self) else "no steps"
        return (
            f"Recording({len(self)} steps, {span}, {len(self.images)} probe images, "
            f"layers {list(self.layers)}, {len(self.histograms)} weight arrays, "
            f"metrics {list(self.metrics)}, {self.nbytes / 1e6:.1f} MB)"
        )

    def _repr_png_(self) -> bytes | None:
        """The first probe image's channels in the first spatial layer at evenly spaced steps
        (None without such a layer): what a notebook shows for the recording."""
        from jaxvis.render import preview

        for acts in self.activations.values():
            if acts.ndim == 5 and len(acts):  # (T, N, H, W, C)
                return preview.png(preview.time_strip(acts[:, 0]))
        return None

    # ------------------------------------------------------------------ files

    def _arrays(self) -> dict[str, np.ndarray]:
        """The flat ``{npz key: array}`` view; names live in the meta, keys are indices."""
        arrays: dict[str, np.ndarray] = {
            "steps": np.asarray(self.steps, np.int64),
            "images": np.asarray(self.images, np.float32),
        }
        if self.labels is not None:
            arrays["labels"] = np.asarray(self.labels)
        for i, arr in enumerate(self.activations.values()):
            arrays[f"act_{i}"] = arr
        for i, arr in enumerate(self.metrics.values()):
            arrays[f"metric_{i}"] = arr
        for i, key in enumerate(self.histograms):
            arrays[f"hist_{i}"] = self.histograms[key]
            arrays[f"edges_{i}"] = self.bin_edges[key]
            arrays[f"stats_{i}"] = self.stats[key]
        return arrays

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "layers": list(self.activations),
            "metrics": list(self.metrics),
            "weights": list(self.histograms),
            "stats": list(STATS),
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the recording to ``path`` as one ``.npz`` (no pickle), atomically.

        The file is written to a temp file in the same directory and renamed over ``path``
        only when complete: a crash mid-write leaves any previous file at ``path`` intact.

        Example::

            rec.save("mnist_run.npz"); jv.Recording.load("mnist_run.npz")
        """
        target = Path(os.fspath(path))
        arrays = self._arrays()
        header = json.dumps(self._header()).encode()
        arrays["header"] = np.frombuffer(header, np.uint8)
        atomic_write(target, lambda f: _write_npz(f, arrays))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Recording:
        """Read a recording written by :meth:`save` (``allow_pickle=False``).

        Example::

            rec = jv.Recording.load("mnist_run.npz")
        """
        path = Path(os.fspath(path))
        if not path.exists():
            raise FileNotFoundError(f"no recording at {path}")
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path} is not a readable jaxvis recording: {exc}") from exc
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a jaxvis recording (not an .npz archive)")
        with z:
            head = _read_header(path, z)
            try:
                return cls._from_members(z, head)
            except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(
                    f"{path} is a damaged jaxvis recording (a member could not be read): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    @classmethod
    def _from_members(cls, z: Any, head: dict[str, Any]) -> Recording:
        weights = head["weights"]
        return cls(
            steps=z["steps"],
            images=z["images"],
            activations={n: z[f"act_{i}"] for i, n in enumerate(head["layers"])},
            metrics={n: z[f"metric_{i}"] for i, n in enumerate(head["metrics"])},
            histograms={n: z[f"hist_{i}"] for i, n in enumerate(weights)},
            bin_edges={n: z[f"edges_{i}"] for i, n in enumerate(weights)},
            stats={n: z[f"stats_{i}"] for i, n in enumerate(weights)},
            labels=z["labels"] if "labels" in z.files else None,
            meta=head.get("meta", {}),
        )


def _read_header(path: Path, z: Any) -> dict[str, Any]:
    """The JSON header of the recording ``z`` read from ``path``, checked for format/version."""
    if "header" not in z.files:
        raise ValueError(f"{path} is not a jaxvis recording (no header)")
    try:
        head = json.loads(bytes(z["header"]).decode())
    except (ValueError, UnicodeDecodeError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} has a header that is not JSON: {exc}") from exc
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        got = head.get("format") if isinstance(head, dict) else head
        raise ValueError(f"{path} is not a jaxvis recording: format {got!r}")
    if head.get("version") != VERSION:
        raise ValueError(
            f"{path} is recording format version {head.get('version')}, this "
            f"jaxvis reads version {VERSION}"
        )
    for key in ("layers", "metrics", "weights"):
        if not isinstance(head.get(key), list):
            raise ValueError(f"{path} has a damaged header: {key!r} is not a list")
    return head


def _write_npz(f: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed npz to the open file ``f`` (one place to fail)."""
    np.savez(f, **arrays)


def npz_overhead(names: list[str]) -> int:
    """Bytes an uncompressed npz spends besides the array data, for arrays called ``names``.

    Per member: a zip local header (30 B + name), a central-directory entry (46 B + name),
    numpy's zip64 extra fields (20 + 28 B) and the ``.npy`` header (128 B for small shapes);
    plus the end-of-archive records (22 B).
    """
    return sum(30 + 46 + 48 + 2 * len(f"{n}.npy") + 128 for n in names) + 22
