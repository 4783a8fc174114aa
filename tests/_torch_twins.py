"""PyTorch twins of the reference architectures, written with ``torch.nn`` in the layouts of
torchvision (ResNet) and timm (ViT), so that their ``state_dict`` keys are those libraries'.

Hugging Face's ViT computes the same function as timm's (separate query/key/value Linears
instead of one fused ``qkv``, LayerNorm epsilon 1e-12): :func:`hf_state_dict` renames a timm
twin's keys to Hugging Face's ``ViTForImageClassification`` names, splitting ``qkv``. Hugging
Face's ``ResNetForImageClassification`` is torchvision's ResNet (v1.5) under other names:
:func:`hf_resnet_state_dict` renames a torchvision twin's keys.
"""

from __future__ import annotations

import re

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride here
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


def _downsample(inplanes: int, out: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == out:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))


class ResNet(nn.Module):
    """torchvision's ``ResNet`` layout: conv1, bn1, maxpool, layer1..4, avgpool, fc."""

    def __init__(self, block: str, layers: list[int], num_classes: int) -> None:
        super().__init__()
        cls = BasicBlock if block == "basic" else Bottleneck
        expansion = 1 if block == "basic" else 4
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, n in enumerate(layers):
            planes = 64 * 2**i
            blocks = []
            for j in range(n):
                blocks.append(cls(inplanes, planes, 2 if i > 0 and j == 0 else 1))
                inplanes = planes * expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.depth = len(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.depth):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        y = attn.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, gelu: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU(approximate=gelu)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, eps: float, gelu: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, hidden, gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm's ``VisionTransformer`` layout (class token, learned ``pos_embed``, ``head``)."""

    def __init__(
        self,
        image_size: int,
        patch: int,
        width: int,
        depth: int,
        heads: int,
        hidden: int,
        num_classes: int,
        eps: float = 1e-6,
        gelu: str = "none",
    ) -> None:
        super().__init__()
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = PatchEmbed(patch, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.blocks = nn.Sequential(*[Block(width, heads, hidden, eps, gelu) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=eps)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights drawn from ``seed`` (He-normal convolutions, so activations keep their
    scale), non-trivial BatchNorm statistics and LayerNorm affine parameters; returns the
    model in ``eval()`` mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                fan_in = module.weight[0].numel()
                gain = 2.0 if isinstance(module, nn.Conv2d) else 1.0
                w = torch.randn(module.weight.shape, generator=g) * (gain / fan_in) ** 0.5
                module.weight.copy_(w)
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                module.bias.copy_(0.2 * torch.randn(n, generator=g))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                module.running_var.copy_(0.5 + torch.rand(n, generator=g))
                module.num_batches_tracked.fill_(7)
            elif isinstance(module, VisionTransformer):
                module.cls_token.copy_(torch.randn(module.cls_token.shape, generator=g))
                module.pos_embed.copy_(0.5 * torch.randn(module.pos_embed.shape, generator=g))
            elif isinstance(module, nn.LayerNorm):
                n = module.normalized_shape[0]
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                module.bias.copy_(0.2 * torch.randn(n, generator=g))
            if isinstance(module, nn.Linear | nn.Conv2d) and module.bias is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
    return model.eval()


def hf_state_dict(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm ViT ``state_dict`` under Hugging Face ``ViTForImageClassification`` names."""
    top = {
        "cls_token": "vit.embeddings.cls_token",
        "pos_embed": "vit.embeddings.position_embeddings",
        "patch_embed.proj": "vit.embeddings.patch_embeddings.projection",
        "norm": "vit.layernorm",
        "head": "classifier",
    }
    block = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    out = {}
    for key, value in timm_state.items():
        prefix, _, leaf = key.rpartition(".")
        if key in top:
            out[top[key]] = value
        elif prefix in top:
            out[f"{top[prefix]}.{leaf}"] = value
        else:
            _, i, rest = prefix.split(".", 2)
            layer = f"vit.encoder.layer.{i}"
            if rest == "attn.qkv":
                for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                    out[f"{layer}.attention.attention.{name}.{leaf}"] = part
            else:
                out[f"{layer}.{block[rest]}.{leaf}"] = value
    return out


def hf_resnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ResNet ``state_dict`` under Hugging Face ``ResNetForImageClassification``
    names."""
    top = {
        "conv1": "resnet.embedder.embedder.convolution",
        "bn1": "resnet.embedder.embedder.normalization",
        "fc": "classifier.1",
    }
    block = {
        "conv1": "layer.0.convolution",
        "bn1": "layer.0.normalization",
        "conv2": "layer.1.convolution",
        "bn2": "layer.1.normalization",
        "conv3": "layer.2.convolution",
        "bn3": "layer.2.normalization",
        "downsample.0": "shortcut.convolution",
        "downsample.1": "shortcut.normalization",
    }
    out = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in top:
            out[f"{top[prefix]}.{leaf}"] = value
            continue
        stage, index, module = re.fullmatch(r"layer(\d)\.(\d+)\.(.+)", prefix).groups()
        out[f"resnet.encoder.stages.{int(stage) - 1}.layers.{index}.{block[module]}.{leaf}"] = value
    return out
