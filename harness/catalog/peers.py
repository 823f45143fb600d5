"""Peer networks, built by their own libraries (never re-implemented here): MONAI and nnU-Net's
``dynamic-network-architectures``. An optional extra: ``pip install .[peers]``.

nnU-Net configurations follow what nnU-Net v2's 3d_fullres planner derives for an isotropic 64³ patch
(the article's input size), written out here because the planner needs a dataset to run:
- the encoder pools an axis while it stays at least 8 (twice the minimum feature map of 4):
  64 -> 32 -> 16 -> 8 -> 4, so 5 stages with strides 1, 2, 2, 2, 2 and 3x3x3 kernels;
- features 32 doubling per stage up to 320: 32, 64, 128, 256, 320;
- InstanceNorm3d (eps 1e-5, affine), LeakyReLU (inplace), convolution bias on, no dropout;
- ``PlainConvUNet``: 2 convolutions per stage in encoder and decoder;
- ``ResidualEncoderUNet`` (the ResEnc presets): 1, 3, 4, 6, 6 residual blocks per encoder stage and 1
  convolution per decoder stage. nnU-Net's ResEnc M, L and XL presets differ in the GPU memory they
  plan patch and batch size for, not in how a given patch becomes a network: for a 64³ patch all three
  give this network, which is registered once as ``nnunet-resenc-m``.
- deep supervision off: the harness's training step puts cross-entropy on the full-resolution output.
"""
from __future__ import annotations


from harness.catalog.registry import (INSTALL_HINT, PEER_PACKAGES, Family, Variant, available,  # noqa: F401
                                      register, register_family)


NNUNET_FEATURES = (32, 64, 128, 256, 320)
NNUNET_STRIDES = (1, 2, 2, 2, 2)



def monai_basic_unet(in_channels: int = 1, num_classes: int = 2, features=(32, 32, 64, 128, 256, 32)):
    """MONAI ``BasicUNet`` with its defaults (3D)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes, features=tuple(features))


def monai_flexible_unet_resnet50(in_channels: int = 1, num_classes: int = 2):
    """MONAI ``FlexibleUNet`` with its ResNet50 backbone in 3D, randomly initialised."""
    from monai.networks.nets import FlexibleUNet

    return FlexibleUNet(in_channels=in_channels, out_channels=num_classes, backbone="resnet50", pretrained=False,
                        spatial_dims=3)


def monai_unet(in_channels: int = 1, num_classes: int = 2, channels=(16, 32, 64, 128, 256), num_res_units: int = 2):
    """MONAI ``UNet`` as its 3D segmentation tutorials configure it (residual units, strides 2)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=num_res_units)


def _nnunet_common(in_channels: int, num_classes: int) -> dict:
    import torch.nn as nn

    return dict(input_channels=in_channels, n_stages=len(NNUNET_FEATURES), features_per_stage=NNUNET_FEATURES,
                conv_op=nn.Conv3d, kernel_sizes=3, strides=NNUNET_STRIDES, num_classes=num_classes,
                conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                dropout_op=None, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False)


def nnunet_plain_conv_unet(in_channels: int = 1, num_classes: int = 2):
    """nnU-Net's default network (``PlainConvUNet``) for a 64³ 3d_fullres patch."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(**_nnunet_common(in_channels, num_classes), n_conv_per_stage=2, n_conv_per_stage_decoder=2)


def nnunet_residual_encoder_unet(in_channels: int = 1, num_classes: int = 2):
    """nnU-Net's ResEnc network (``ResidualEncoderUNet``) for a 64³ 3d_fullres patch."""
    from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet

    return ResidualEncoderUNet(**_nnunet_common(in_channels, num_classes), n_blocks_per_stage=(1, 3, 4, 6, 6),
                               n_conv_per_stage_decoder=1)


# ---------------------------------------------------------------------------------------------------
# Peers, built by their own libraries (harness.catalog.peers); listed even when the library is missing.
# ---------------------------------------------------------------------------------------------------
def _register_peers() -> None:
    seg = dict(in_channels=1, num_classes=2)
    cube = (1, 1, 64, 64, 64)
    for name, family, builder, description in (
        ("monai-basicunet", "monai", monai_basic_unet, "MONAI BasicUNet, its defaults (3D)"),
        ("monai-flexunet-resnet50", "monai", monai_flexible_unet_resnet50,
         "MONAI FlexibleUNet, ResNet50 backbone in 3D, random init"),
        ("monai-unet", "monai", monai_unet, "MONAI UNet as its 3D tutorials set it (16-256, 2 residual units)"),
        ("nnunet-plain", "nnunet", nnunet_plain_conv_unet,
         "nnU-Net PlainConvUNet as 3d_fullres plans a 64³ patch (5 stages, 32-320, InstanceNorm, LeakyReLU)"),
        ("nnunet-resenc-m", "nnunet", nnunet_residual_encoder_unet,
         "nnU-Net ResidualEncoderUNet (ResEnc M/L/XL for a 64³ patch: blocks 1,3,4,6,6)"),
    ):
        register(Variant(name, family, builder, dict(seg), cube, description))


register_family(Family("monai", "peer", library="monai"))
register_family(Family("nnunet", "peer", library="nnunet"))
_register_peers()
