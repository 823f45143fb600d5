"""Named variants of the article's models, as data (after timm's ``register_model``/``create_model``).

A variant is a name, the article's class, a dict of constructor defaults, an example input and the
article's printed claims about it. ``list_models("unet3d*")`` feeds parametrization everywhere.
"""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

import reference_models as rm

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Claim:
    """One example the article runs: settings, input, and the shapes it printed."""

    input_shape: Shape
    output_shape: Shape
    stage_shapes: tuple[Shape, ...] = ()  # x1..x5 as printed, when the article printed them
    overrides: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # the article's section


@dataclass(frozen=True)
class Limit:
    """A setting the article says is not supported."""

    overrides: Mapping[str, Any]
    text: str


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # "unet2d" | "unet3d" | "resnet3d" | "unet3d-resnet"
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    example_input: Shape  # (N, C, *spatial): the article's input, or the family's where it has none
    description: str
    claims: tuple[Claim, ...] = ()
    limits: tuple[Limit, ...] = ()

    @property
    def spatial_dims(self) -> int:
        return len(self.example_input) - 2

    def constructor_args(self, **overrides) -> dict[str, Any]:
        unknown = set(overrides) - set(inspect.signature(self.builder).parameters)
        if unknown:
            valid = ", ".join(inspect.signature(self.builder).parameters)
            raise ValueError(f"{self.name}: unknown constructor argument(s) {sorted(unknown)}; "
                             f"{self.builder.__name__} takes: {valid}")
        return {**self.defaults, **overrides}


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = variant
    return variant


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in the article's order."""
    return [name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)]


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_REGISTRY)}") from None


def create_model(name: str, **overrides) -> nn.Module:
    variant = get_variant(name)
    return variant.builder(**variant.constructor_args(**overrides))


# ---------------------------------------------------------------------------------------------------
# The article's variants. Claimed shapes are the article's printed output, typed in as the claims
# under test; nothing here is a measurement.
# ---------------------------------------------------------------------------------------------------
_UNET_STAGES_64 = ((1, 64, 64, 64, 64), (1, 128, 32, 32, 32), (1, 256, 16, 16, 16), (1, 512, 8, 8, 8))
_RESNET_LAYERS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}
_ENCODER_LIMITS = (
    Limit({"block": rm.BasicBlock, "layers": [2, 2, 2, 2]},
          "only ResNet50 and deeper (Bottleneck) are supported, not ResNet18/34 (BasicBlock)"),
    Limit({"bilinear": True}, "bilinear=True is not supported"),
)

register(Variant(
    "unet2d", "unet2d", rm.UNet,
    dict(in_channels=1, num_classes=2, bilinear=True, base_c=64), (1, 1, 224, 224),
    "2D UNet, bilinear upsampling (article 1.1)",
    claims=(Claim((1, 1, 224, 224), (1, 2, 224, 224), where="1.1"),),
))
register(Variant(
    "unet2d-transposed", "unet2d", rm.UNet,
    dict(in_channels=1, num_classes=2, bilinear=False, base_c=64), (1, 1, 224, 224),
    "2D UNet, transposed-convolution upsampling (article 1.1, bilinear=False)",
))
register(Variant(
    "unet3d", "unet3d", rm.UNet_3d,
    dict(in_channels=1, num_classes=2, bilinear=False, base_c=64), (1, 1, 64, 64, 64),
    "3D UNet, transposed-convolution upsampling: the article's recommendation (1.2)",
    claims=(Claim((1, 1, 64, 64, 64), (1, 2, 64, 64, 64), _UNET_STAGES_64 + ((1, 1024, 4, 4, 4),),
                  where="1.2"),),
))
register(Variant(
    "unet3d-trilinear", "unet3d", rm.UNet_3d,
    dict(in_channels=1, num_classes=2, bilinear=True, base_c=64), (1, 1, 64, 64, 64),
    "3D UNet, trilinear upsampling (1.2, bilinear=True)",
    claims=(Claim((1, 1, 64, 64, 64), (1, 2, 64, 64, 64), _UNET_STAGES_64 + ((1, 512, 4, 4, 4),),
                  where="1.2"),),
))
register(Variant(
    "resnet50-3d", "resnet3d", rm.ResNet_3d,
    dict(block=rm.Bottleneck, layers=_RESNET_LAYERS["resnet50"], shortcut_type="B", no_cuda=False,
         num_classes=3, include_top=True), (1, 1, 64, 64, 64),
    "modified 3D ResNet50 classifier: stem stride 1, Bottleneck expansion 2 (article 2)",
    claims=(Claim((1, 1, 64, 64, 64), (1, 3), _UNET_STAGES_64 + ((1, 1024, 4, 4, 4),), where="2"),),
))
for _depth, _layers in _RESNET_LAYERS.items():
    _claims = [Claim((1, 1, 64, 64, 64), (1, 2, 64, 64, 64), where="3")]
    if _depth == "resnet50":
        _claims.append(Claim((1, 3, 128, 128, 64), (1, 2, 128, 128, 64), overrides={"in_channels": 3},
                             where="3"))
    register(Variant(
        f"unet3d-{_depth}", "unet3d-resnet", rm.UNet_3d_resnet_encoder,
        dict(block=rm.Bottleneck, layers=_layers, shortcut_type="B", no_cuda=False, in_channels=1,
             num_classes=2, bilinear=False, base_c=64), (1, 1, 64, 64, 64),
        f"3D UNet with a modified ResNet{_depth[6:]} encoder (article 3)",
        claims=tuple(_claims), limits=_ENCODER_LIMITS,
    ))

BASELINE = "unet3d"

# ---------------------------------------------------------------------------------------------------
# Not the article's code: UNet++ in 3D, the article's closing question (issue 12). harness/models/unetpp.py
# says what each follows. The EfficientNet-B0 variants need MONAI (extra "unetpp").
# ---------------------------------------------------------------------------------------------------
from .models import unetpp as _upp  # noqa: E402

_NEEDS_MONAI = "" if _upp.monai_available() else f" [unavailable: MONAI missing; {_upp.INSTALL}]"
register(Variant(
    "unetpp3d", "unetpp3d", _upp.UNetPlusPlus_3d,
    dict(in_channels=1, num_classes=2, base_c=64, deep_supervision=False), (1, 1, 64, 64, 64),
    "3D UNet++ (Zhou et al. 2018), the article's DoubleConv_3d blocks and base_c=64: the reference point",
))
for _name, _block, _what in (("unetpp3d-effb0", "conv", "DoubleConv_3d decoder"),
                             ("unetpp3d-effb0-mbconv", "mbconv", "MBConv decoder (the answer's optional step)")):
    register(Variant(
        _name, "unetpp3d", _upp.EfficientUNetPlusPlus_3d,
        dict(in_channels=1, num_classes=2, decoder_block=_block, decoder_channels=_upp.DECODER_CHANNELS,
             deep_supervision=False), (1, 1, 64, 64, 64),
        f"3D UNet++, MONAI EfficientNet-B0 encoder, {_what}{_NEEDS_MONAI}",
    ))
