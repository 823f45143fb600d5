"""Model families and named variants, as data (after timm's ``register_model``/``create_model``).

A *family* is one record holding everything the harness knows about a kind of network: where it comes
from (the article, a peer library, the user), the modules whose outputs are its stages, how its envelope
is decided (a hand-written shape interpreter in ``harness.envelope``, or probed on the ``meta`` device),
its training target, its input channels' argument and the library it needs. A *variant* is a name, a
family, a builder, constructor defaults and an example input. ``list_models("unet3d*")`` feeds
parametrization everywhere. Adding a variant is one ``register`` call; adding a family is one
``register_family`` call plus its builder.
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
class Family:
    """Everything the harness knows about a kind of network, in one place."""

    name: str
    source: str  # "article" | "peer" | "user"
    stage_modules: tuple[str, ...] = ()  # modules whose outputs are the stages x1..x5 (probe, claims)
    envelope: str | None = None  # a shape interpreter in harness.envelope; None: probed on the meta device
    target: str = "segmentation"  # training target: a class per voxel, or one per sample ("classification")
    channels_argument: str | None = "in_channels"  # the constructor argument that sets the input channels
    library: str = ""  # a key of harness.peers.PEER_PACKAGES when the family needs an optional library


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    return _FAMILIES[name]


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # a registered Family's name
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    example_input: Shape  # (N, C, *spatial): the article's input, or the family's where it has none
    description: str
    claims: tuple[Claim, ...] = ()
    limits: tuple[Limit, ...] = ()

    @property
    def spatial_dims(self) -> int:
        return len(self.example_input) - 2

    @property
    def record(self) -> Family:
        return _FAMILIES[self.family]

    @property
    def source(self) -> str:
        return self.record.source

    def unavailable_reason(self) -> str:
        """Empty when the variant can be built here, else what to install."""
        from . import peers

        library = self.record.library
        if library and not peers.available(library):
            return f"needs {peers.PEER_PACKAGES[library]}: {peers.INSTALL_HINT}"
        return ""

    def constructor_args(self, **overrides) -> dict[str, Any]:
        unknown = set(overrides) - set(inspect.signature(self.builder).parameters)
        if unknown:
            valid = ", ".join(inspect.signature(self.builder).parameters)
            raise ValueError(f"{self.name}: unknown constructor argument(s) {sorted(unknown)}; "
                             f"{self.builder.__name__} takes: {valid}")
        return {**self.defaults, **overrides}


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.family not in _FAMILIES:
        raise ValueError(f"variant {variant.name!r}: register its family {variant.family!r} first")
    if variant.name in _REGISTRY:
        if _REGISTRY[variant.name] == variant:
            return variant
        raise ValueError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = variant
    return variant


def list_models(pattern: str = "*", sources: tuple[str, ...] | None = None, available: bool = False) -> list[str]:
    """Registered names matching a shell-style pattern, in registration order (the article's first);
    ``sources`` keeps only those families' sources; ``available`` only what can be built here."""
    return [name for name, variant in _REGISTRY.items() if fnmatch.fnmatchcase(name, pattern)
            and (sources is None or variant.source in sources)
            and (not available or not variant.unavailable_reason())]


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_REGISTRY)}") from None


def create_model(name: str, **overrides) -> nn.Module:
    variant = get_variant(name)
    missing = variant.unavailable_reason()
    if missing:
        raise ValueError(f"{name} is not available here: it {missing}")
    return variant.builder(**variant.constructor_args(**overrides))


# ---------------------------------------------------------------------------------------------------
# The families. The article's have hand-written envelopes; peers and user models are probed.
# ---------------------------------------------------------------------------------------------------
_UNET_STAGES = ("in_conv", "down1", "down2", "down3", "down4")
_RESNET_STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")
register_family(Family("unet2d", "article", _UNET_STAGES, envelope="unet"))
register_family(Family("unet3d", "article", _UNET_STAGES, envelope="unet"))
register_family(Family("resnet3d", "article", _RESNET_STAGES, envelope="resnet", target="classification",
                       channels_argument=None))  # the article's ResNet stem takes exactly one channel
register_family(Family("unet3d-resnet", "article", _RESNET_STAGES, envelope="unet-resnet"))
register_family(Family("monai", "peer", library="monai"))
register_family(Family("nnunet", "peer", library="nnunet"))
register_family(Family("user", "user"))

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

# ---------------------------------------------------------------------------------------------------
# Peers, built by their own libraries (harness.peers); listed even when the library is missing.
# ---------------------------------------------------------------------------------------------------
def _register_peers() -> None:
    from . import peers

    seg = dict(in_channels=1, num_classes=2)
    cube = (1, 1, 64, 64, 64)
    for name, family, builder, description in (
        ("monai-basicunet", "monai", peers.monai_basic_unet, "MONAI BasicUNet, its defaults (3D)"),
        ("monai-flexunet-resnet50", "monai", peers.monai_flexible_unet_resnet50,
         "MONAI FlexibleUNet, ResNet50 backbone in 3D, random init"),
        ("monai-unet", "monai", peers.monai_unet, "MONAI UNet as its 3D tutorials set it (16-256, 2 residual units)"),
        ("nnunet-plain", "nnunet", peers.nnunet_plain_conv_unet,
         "nnU-Net PlainConvUNet as 3d_fullres plans a 64³ patch (5 stages, 32-320, InstanceNorm, LeakyReLU)"),
        ("nnunet-resenc-m", "nnunet", peers.nnunet_residual_encoder_unet,
         "nnU-Net ResidualEncoderUNet (ResEnc M/L/XL for a 64³ patch: blocks 1,3,4,6,6)"),
    ):
        register(Variant(name, family, builder, dict(seg), cube, description))


_register_peers()

BASELINE = "unet3d"

# ---------------------------------------------------------------------------------------------------
# Not the article's code: UNet++ in 3D, the article's closing question (issue 12). harness/models/unetpp.py
# says what each follows. The EfficientNet-B0 variants need MONAI (extra "unetpp").
# ---------------------------------------------------------------------------------------------------
from .models import unetpp as _upp  # noqa: E402

# UNet++ answers the article's closing question: its own source ("follow-up"), so the article's sweeps and
# regression facts do not carry it unless asked (``--models 'unetpp3d*'``, ``--profile compare``).
_UNETPP_STAGES = ("x0_0", "x1_0", "x2_0", "x3_0", "x4_0")  # UNet++'s encoder column X(i,0)
register_family(Family("unetpp3d", "follow-up", _UNETPP_STAGES, envelope="unetpp"))
register_family(Family("unetpp3d-effb0", "follow-up", _UNETPP_STAGES, envelope="unetpp", library="monai"))
register(Variant(
    "unetpp3d", "unetpp3d", _upp.UNetPlusPlus_3d,
    dict(in_channels=1, num_classes=2, base_c=64, deep_supervision=False), (1, 1, 64, 64, 64),
    "3D UNet++ (Zhou et al. 2018), the article's DoubleConv_3d blocks and base_c=64: the reference point",
))
for _name, _block, _what in (("unetpp3d-effb0", "conv", "DoubleConv_3d decoder"),
                             ("unetpp3d-effb0-mbconv", "mbconv", "MBConv decoder (the answer's optional step)")):
    register(Variant(
        _name, "unetpp3d-effb0", _upp.EfficientUNetPlusPlus_3d,
        dict(in_channels=1, num_classes=2, decoder_block=_block, decoder_channels=_upp.DECODER_CHANNELS,
             deep_supervision=False), (1, 1, 64, 64, 64),
        f"3D UNet++, MONAI EfficientNet-B0 encoder, {_what}",
    ))
