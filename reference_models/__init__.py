"""The article's networks ("3D Unet + Resnet替换Encoder"), faithful to its code, under its names.

Faithful means: the same constructor signatures and defaults, module and parameter names in the same
order, the same initial weights under the same seed, the same outputs, and the same failures. The
article's quirks are kept and documented where they live; improvements belong elsewhere.
"""
from .resnet3d import BasicBlock, Bottleneck, ResNet_3d, conv3x3x3, downsample_basic_block
from .stage_prints import stage_prints, stage_prints_enabled
from .unet2d import DoubleConv, Down, OutConv, Up, UNet
from .unet3d import DoubleConv_3d, Down_3d, OutConv_3d, Up_3d, UNet_3d
from .unet3d_resnet_encoder import UNet_3d_resnet_encoder

__all__ = [
    "UNet", "DoubleConv", "Down", "Up", "OutConv",
    "UNet_3d", "DoubleConv_3d", "Down_3d", "Up_3d", "OutConv_3d",
    "conv3x3x3", "downsample_basic_block", "BasicBlock", "Bottleneck", "ResNet_3d",
    "UNet_3d_resnet_encoder",
    "stage_prints", "stage_prints_enabled",
]
