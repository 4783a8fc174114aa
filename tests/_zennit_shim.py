"""Import zennit without torchvision.

``zennit/__init__`` imports ``zennit.torchvision``, which imports
``torchvision.models.resnet.{Bottleneck, BasicBlock}``; torchvision cannot be installed here (its
wheels replace the CPU torch build). This is an import shim only: zennit uses those two names in
its torchvision canonizers (``ResNetCanonizer``, ``VGGCanonizer``), which the tests never use.
When torchvision is missing, placeholder modules with placeholder classes are registered in
``sys.modules`` before zennit is imported; a real torchvision is left alone.

Example::

    from _zennit_shim import zennit
    from zennit.composites import EpsilonGammaBox
"""

from __future__ import annotations

import importlib.util
import sys
import types


def _install() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    names = ("torchvision", "torchvision.models", "torchvision.models.resnet")
    modules = {name: sys.modules.get(name) or types.ModuleType(name) for name in names}
    for cls in ("Bottleneck", "BasicBlock"):  # placeholders: never instantiated
        setattr(modules["torchvision.models.resnet"], cls, type(cls, (), {}))
    modules["torchvision"].models = modules["torchvision.models"]
    modules["torchvision.models"].resnet = modules["torchvision.models.resnet"]
    for name, module in modules.items():
        sys.modules.setdefault(name, module)


_install()

import zennit  # noqa: E402

__all__ = ["zennit"]
