"""An SAE on a Linen ViT fixture's block patch tokens, end to end: the activation dataset
against the fixture's independent reference pass, then fit, metrics and heatmaps over the patch
grid (its own file: compiling the ViT takes most of its time)."""

from __future__ import annotations

import numpy as np

import jaxvis as jv
from jaxvis.concepts import activations, fit, sae_metrics


def test_sae_on_a_linen_vit_blocks_patch_tokens_end_to_end():
    from fixtures import make_linen_vit

    f = make_linen_vit(image_size=32)
    probe = jv.Probe(f.model, **f.probe_kwargs)
    layer = "Transformer.encoderblock_0"
    x = f.sample(12)
    ds = activations(probe, x, layer, progress=False)
    ref = np.asarray(f.reference(x)[layer])  # (N, T, D), a class token first
    lay = probe.layout(layer)
    assert lay.kind == "tokens" and lay.grid.prefix == 1
    n_patch = lay.grid.n_patches
    assert ds.grid == (lay.grid.rows, lay.grid.cols) and len(ds) == 12 * n_patch
    np.testing.assert_allclose(
        ds.samples, ref[:, 1:].reshape(12 * n_patch, -1), rtol=1e-4, atol=1e-4
    )
    sae = fit(ds, 64, method="topk", k=4, steps=100, batch_size=64, chunk=25, progress=False)
    m = sae_metrics(sae, ds)
    assert m["l0"] <= 4 and m["r2"] > 0.3, m
    from jaxvis.concepts import views

    heat = views.heatmap(probe, sae, x[:2])
    assert heat.shape == (2, lay.grid.rows, lay.grid.cols, 64)
    np.testing.assert_allclose(
        heat.reshape(2 * n_patch, 64),
        sae.encode(ds.samples[: 2 * n_patch]),
        rtol=1e-3,
        atol=1e-3,
    )
