"""Feature visualisation at 224x224 on a ResNet-50 and a ViT-S/16 (jv.zoo, random weights):
a channel and a whole 64-channel layer render, with the default (auto) settings. Mechanics
only (2 steps): shapes, range, finite values, a climbing objective needs more steps than CI
can afford here; the speed is ``benchmarks/optvis.py --only lucent``."""

from __future__ import annotations

import numpy as np
import pytest

import jaxvis as jv
from jaxvis.optvis import objectives as O

#: ResNet-50's stem convolution is a whole 64-channel layer (112, 112, 64); ViT-S/16 has no
#: 64-channel layer on its patch grid (its widths are 384, the heads' 6 x 64 read as 384), so
#: there the batch is 64 of the 384 channels of its first block
LAYERS = {"resnet50": "conv1", "vit_s16": "Transformer.encoderblock_0"}


@pytest.mark.parametrize("arch", sorted(LAYERS))
def test_channel_and_whole_layer_render_at_224(arch):
    module = getattr(jv.zoo, arch)(num_classes=10)
    probe = jv.Probe(module, jv.zoo.init_variables(module, seed=0), input_shape=(224, 224, 3))
    layer = LAYERS[arch]
    width = 64 if arch == "resnet50" else 384
    assert probe.layout(layer).shape[-1] == width
    assert jv.optvis.defaults.auto(probe).param.kind == "fourier"
    one = jv.optvis.render(probe, O.channel(layer, 5), steps=2, chunk=2)
    assert one.images.shape == (1, 224, 224, 3) and one.history.shape == (2, 1)
    batch = O.channel(layer, "*" if width == 64 else list(range(64)))
    whole = jv.optvis.render(probe, batch, steps=2, chunk=2)
    assert whole.images.shape == (64, 224, 224, 3) and whole.values.shape == (64,)
    for res in (one, whole):
        assert np.isfinite(res.values).all() and np.isfinite(res.history).all()
        assert res.images.min() >= 0 and res.images.max() <= 1
