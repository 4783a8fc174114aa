"""Vision Transformers (ViT-Ti/S/B-16) in Flax Linen, with the parameter tree of
google-research/vision_transformer.

Class token, learned position embeddings (one per token, the class token's included),
pre-norm blocks of Flax's ``MultiHeadDotProductAttention`` and a GELU MLP, a final LayerNorm
and a linear head on the class token. Layers as the probe lists them: ``embedding`` (the patch
convolution), ``Transformer.posembed_input``, ``Transformer.encoderblock_{i}`` with
``LayerNorm_0``, ``MultiHeadDotProductAttention_1`` (and its ``query``/``key``/``value``/``out``),
``LayerNorm_2``, ``MlpBlock_3``; ``Transformer.encoder_norm``; ``head``.

Example::

    module = jv.zoo.vit_s16(num_classes=1000, image_size=224)
    variables = jv.zoo.init_variables(module, seed=0)
    probe = jv.Probe(module, variables, input_shape=(224, 224, 3))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

__all__ = ["VisionTransformer", "vit_ti16", "vit_s16", "vit_b16"]


class AddPositionEmbs(nn.Module):
    """Adds a learned position embedding ``pos_embedding`` of shape ``(1, T, D)``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]))
        return x + pos


class MlpBlock(nn.Module):
    """Dense, GELU, Dense."""

    mlp_dim: int
    approximate_gelu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Dense(self.mlp_dim, name="Dense_0")(x)
        y = nn.gelu(y, approximate=self.approximate_gelu)
        return nn.Dense(x.shape[-1], name="Dense_1")(y)


class Encoder1DBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    num_heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    approximate_gelu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="LayerNorm_0")(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, deterministic=True, name="MultiHeadDotProductAttention_1"
        )(y, y)
        x = x + y
        y = nn.LayerNorm(epsilon=self.layer_norm_eps, name="LayerNorm_2")(x)
        return x + MlpBlock(self.mlp_dim, self.approximate_gelu, name="MlpBlock_3")(y)


class Encoder(nn.Module):
    """Position embeddings, ``depth`` blocks and the final LayerNorm ``encoder_norm``."""

    depth: int
    num_heads: int
    mlp_dim: int
    layer_norm_eps: float = 1e-6
    approximate_gelu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = AddPositionEmbs(name="posembed_input")(x)
        for i in range(self.depth):
            x = Encoder1DBlock(
                self.num_heads,
                self.mlp_dim,
                self.layer_norm_eps,
                self.approximate_gelu,
                name=f"encoderblock_{i}",
            )(x)
        return nn.LayerNorm(epsilon=self.layer_norm_eps, name="encoder_norm")(x)


class VisionTransformer(nn.Module):
    """A ViT classifying from its class token.

    Args:
        num_classes: width of the head.
        image_size: side of the square input; the position embeddings cover
            ``(image_size // patch_size) ** 2 + 1`` tokens.
        patch_size, width, depth, num_heads, mlp_dim: the usual ViT sizes.
        layer_norm_eps: 1e-6 as timm and big_vision (Hugging Face's ViT uses 1e-12).
        approximate_gelu: the tanh GELU of Flax's ``nn.gelu`` default (what the
            vision_transformer and big_vision checkpoints were trained with); False is the
            exact GELU of timm and Hugging Face.

    Example::

        module = VisionTransformer(num_classes=10, image_size=32, patch_size=8, width=64,
                                   depth=2, num_heads=4, mlp_dim=128)
        logits = module.apply(variables, x)   # x: (N, 32, 32, 3)
    """

    num_classes: int = 1000
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    layer_norm_eps: float = 1e-6
    approximate_gelu: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"x must be (N, {self.image_size}, {self.image_size}, C) for this ViT "
                f"(image_size={self.image_size}), got {x.shape}"
            )
        p = self.patch_size
        x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="embedding")(x)
        n, h, w, c = x.shape
        x = x.reshape(n, h * w, c)
        cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, c))
        x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, c)), x], axis=1)
        x = Encoder(
            self.depth,
            self.num_heads,
            self.mlp_dim,
            self.layer_norm_eps,
            self.approximate_gelu,
            name="Transformer",
        )(x)
        return nn.Dense(self.num_classes, name="head")(x[:, 0])


def vit_ti16(num_classes: int = 1000, image_size: int = 224) -> VisionTransformer:
    """ViT-Ti/16: width 192, 12 blocks, 3 heads, MLP 768 (5.7 M parameters at 1000 classes)."""
    return VisionTransformer(num_classes, image_size, 16, 192, 12, 3, 768)


def vit_s16(num_classes: int = 1000, image_size: int = 224) -> VisionTransformer:
    """ViT-S/16: width 384, 12 blocks, 6 heads, MLP 1536 (22.1 M parameters at 1000 classes)."""
    return VisionTransformer(num_classes, image_size, 16, 384, 12, 6, 1536)


def vit_b16(num_classes: int = 1000, image_size: int = 224) -> VisionTransformer:
    """ViT-B/16: width 768, 12 blocks, 12 heads, MLP 3072 (86.6 M parameters at 1000 classes)."""
    return VisionTransformer(num_classes, image_size, 16, 768, 12, 12, 3072)
