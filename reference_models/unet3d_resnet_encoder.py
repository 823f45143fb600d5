"""Section 3 of the article: the 3D UNet whose encoder is the modified ResNet (50/101/152)."""
import torch
import torch.nn as nn

from .resnet3d import _ResNetStages
from .stage_prints import stage_print
from .unet3d import Down_3d, OutConv_3d, Up_3d


class UNet_3d_resnet_encoder(_ResNetStages, nn.Module):
    """UNet_3d's decoder on ResNet_3d's stages (stem output and layer1..layer4 as x1..x5).

    Works only as the article uses it: a block with ``expansion == 2`` (``Bottleneck``), ``base_c=64``
    and ``bilinear=False``; anything else fails in the decoder with a channel mismatch, as the
    article's notes say. Quirks kept: ``down4`` is built (and initialised) but never called, so its
    parameters never take part; the stage prints, commented out in the article, follow the switch.
    """

    def __init__(self, block, layers, in_channels: int = 1, num_classes: int = 2, bilinear: bool = True,
                 base_c: int = 64, shortcut_type="B", no_cuda=False):
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.bilinear = bilinear
        self.inplanes = 64
        self.no_cuda = no_cuda

        factor = 2 if bilinear else 1
        self.down4 = Down_3d(base_c * 8, base_c * 16 // factor)
        self.up1 = Up_3d(base_c * 16, base_c * 8 // factor, bilinear)
        self.up2 = Up_3d(base_c * 8, base_c * 4 // factor, bilinear)
        self.up3 = Up_3d(base_c * 4, base_c * 2 // factor, bilinear)
        self.up4 = Up_3d(base_c * 2, base_c, bilinear)
        self.out_conv = OutConv_3d(base_c, num_classes)

        self._build_stem_and_stages(in_channels, block, layers, shortcut_type)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.relu(self.bn1(self.conv1(x)))
        stage_print("x1=", x1)
        x2 = self.layer1(self.maxpool(x1))
        stage_print("x2=", x2)
        x3 = self.layer2(x2)
        stage_print("x3=", x3)
        x4 = self.layer3(x3)
        stage_print("x4=", x4)
        x5 = self.layer4(x4)
        stage_print("x5=", x5)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.out_conv(x)
