"""The article's families and variants: the 2D and 3D UNets, the modified 3D ResNet and the 3D UNet with a
ResNet encoder, built from ``reference_models`` (the faithful copies), with the shapes the article printed
(claims) and the settings it says are unsupported (limits)."""
from __future__ import annotations

import reference_models as rm
from harness.catalog.registry import Claim, Family, Limit, Variant, register, register_family

BASELINE = "unet3d"

# ---------------------------------------------------------------------------------------------------
# The families: hand-written envelopes (harness.envelope.walkers); peers and user models are probed.
# ---------------------------------------------------------------------------------------------------
_UNET_STAGES = ("in_conv", "down1", "down2", "down3", "down4")
_RESNET_STAGES = ("relu", "layer1", "layer2", "layer3", "layer4")
register_family(Family("unet2d", "article", _UNET_STAGES, envelope="unet"))
register_family(Family("unet3d", "article", _UNET_STAGES, envelope="unet"))
register_family(Family("resnet3d", "article", _RESNET_STAGES, envelope="resnet", target="classification",
                       channels_argument=None))  # the article's ResNet stem takes exactly one channel
register_family(Family("unet3d-resnet", "article", _RESNET_STAGES, envelope="unet-resnet"))

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
