"""Parameter counts behind the answer's table ("VGG16 backbone 138 M vs EfficientNet-B0 5.3 M"), counted on
the meta device (no memory, no arithmetic) for ``harness.evidence.claims``; the report reads them from claims.json."""
from __future__ import annotations

import torch
import torch.nn as nn

VGG16_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def vgg16_convs(spatial_dims: int, in_channels: int) -> nn.Module:
    """VGG16's 13 3x3 convolutions (with biases, as torchvision's ``vgg16``), in 2D or 3D."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    layers, channels = [], in_channels
    for width in VGG16_WIDTHS:
        if width != "M":
            layers.append(conv(channels, width, kernel_size=3, padding=1))
            channels = width
    return nn.Sequential(*layers)


def vgg16_classifier_2d() -> nn.Module:
    """torchvision's ``vgg16()``: 13 convolutions and three linear layers (25088 -> 4096 -> 4096 -> 1000)."""
    return nn.Sequential(vgg16_convs(2, 3), nn.Linear(512 * 7 * 7, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000))


def unetpp_parameters() -> dict:
    """Encoder alone and whole network, for the answer's models and for ours (3D, one input channel)."""
    from monai.networks.nets import EfficientNetBN

    from harness.catalog.meta_probe import build
    from harness.catalog.unetpp import DEPTH, encoder_parameters
    with torch.device("meta"):
        reference = {
            "vgg16_2d_classifier": _count(vgg16_classifier_2d()),  # the answer's "138 M"
            "vgg16_2d_convs": _count(vgg16_convs(2, 3)),
            "vgg16_3d_convs_1ch": _count(vgg16_convs(3, 1)),
            "effb0_2d_classifier": _count(EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2)),  # "5.3 M"
            "effb0_3d_classifier_1ch_2cls": _count(EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3,
                                                                  in_channels=1, num_classes=2)),
        }
    variants = {}
    for name in ("unetpp3d", "unetpp3d-effb0", "unetpp3d-effb0-mbconv"):
        model = build(name, device="meta")
        backbone = _count(model.encoder) if hasattr(model, "encoder") else encoder_parameters(model)
        adapters = encoder_parameters(model) - backbone
        variants[name] = {"total": _count(model), "encoder_backbone": backbone, "channel_adapters_1x1x1": adapters,
                          "decoder_nodes": _count(model.decoder), "head": _count(model.head),
                          "decoder_nodes_count": DEPTH * (DEPTH - 1) // 2}
    for name, encoder in (("unet3d", ("in_conv", "down1", "down2", "down3", "down4")),
                          ("unet3d-resnet50", ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"))):
        model = build(name, device="meta")
        variants[name] = {"total": _count(model),
                          "encoder_backbone": sum(_count(model.get_submodule(m)) for m in encoder)}
    return {"reference": reference, "variants": variants}
