"""Section 1.2 of the article: the 3D UNet (trilinear or transposed-convolution decoder).

``UNet_3d`` prints its five encoder stage shapes (``x1=`` ... ``x5=``) when the stage-print switch
is on; the article's code prints them on every call.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._unet_body import _UNetBody, double_conv_layers


class DoubleConv_3d(nn.Sequential):
    """(3x3x3 conv, BN, ReLU) twice; the convolutions have no bias."""

    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__(*double_conv_layers(nn.Conv3d, nn.BatchNorm3d, in_channels, out_channels, mid_channels))


class Down_3d(nn.Sequential):
    """2x2x2 max-pool, then DoubleConv_3d."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.MaxPool3d(2, stride=2),
            DoubleConv_3d(in_channels, out_channels),
        )


class Up_3d(nn.Module):
    """Upsample ``x1`` by 2, pad (or, for negative differences, crop) it to ``x2``'s size,
    concatenate ``[x2, x1]`` and apply DoubleConv_3d."""

    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True)
            self.conv = DoubleConv_3d(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose3d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv_3d(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        # Quirk kept from the article: F.pad takes the LAST dim first, but the amounts are listed as
        # (H, D, W) diffs, so W is padded by H's difference, H by D's and D by W's. Whenever the
        # three spatial sizes at one level differ in parity, the shapes then disagree and torch.cat
        # fails (harness.envelope predicts this exactly).
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        diff_z = x2.size()[4] - x1.size()[4]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2,
                        diff_y // 2, diff_y - diff_y // 2,
                        diff_z // 2, diff_z - diff_z // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class OutConv_3d(nn.Sequential):
    """1x1x1 convolution to class logits (with bias)."""

    def __init__(self, in_channels, num_classes):
        super().__init__(nn.Conv3d(in_channels, num_classes, kernel_size=1))


class UNet_3d(_UNetBody, nn.Module):
    """The article's 3D UNet. Returns logits ``(N, num_classes, D, H, W)``.

    ``bilinear=True`` (the default) upsamples trilinearly; the article recommends ``bilinear=False``
    (transposed convolutions). The forward's annotation in the article (``Dict``) is wrong; it
    returns a tensor.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, bilinear: bool = True, base_c: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.bilinear = bilinear

        self._build_encoder(DoubleConv_3d, Down_3d, in_channels, bilinear, base_c)
        self._build_decoder(Up_3d, OutConv_3d, num_classes, bilinear, base_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(*self._encode(x, prints=True))
