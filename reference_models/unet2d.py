"""Section 1.1 of the article: the 2D UNet (bilinear or transposed-convolution decoder)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ._unet_body import _UNetBody, double_conv_layers


class DoubleConv(nn.Sequential):
    """(3x3 conv, BN, ReLU) twice; the convolutions have no bias."""

    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__(*double_conv_layers(nn.Conv2d, nn.BatchNorm2d, in_channels, out_channels, mid_channels))


class Down(nn.Sequential):
    """2x2 max-pool, then DoubleConv."""

    def __init__(self, in_channels, out_channels):
        super().__init__(
            nn.MaxPool2d(2, stride=2),
            DoubleConv(in_channels, out_channels),
        )


class Up(nn.Module):
    """Upsample ``x1`` by 2, pad it to ``x2``'s size, concatenate ``[x2, x1]`` and apply DoubleConv."""

    def __init__(self, in_channels, out_channels, bilinear=True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        # F.pad takes the last dimension first: (left, right, top, bottom).
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class OutConv(nn.Sequential):
    """1x1 convolution to class logits (with bias)."""

    def __init__(self, in_channels, num_classes):
        super().__init__(nn.Conv2d(in_channels, num_classes, kernel_size=1))


class UNet(_UNetBody, nn.Module):
    """The article's 2D UNet. Returns logits ``(N, num_classes, H, W)``.

    (The article annotates ``forward`` as returning ``Dict[str, Tensor]``; it returns a tensor.)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, bilinear: bool = True, base_c: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.bilinear = bilinear

        self._build_encoder(DoubleConv, Down, in_channels, bilinear, base_c)
        self._build_decoder(Up, OutConv, num_classes, bilinear, base_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(*self._encode(x, prints=False))  # the article's 2D UNet prints nothing
