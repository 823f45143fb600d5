"""Section 3 of the article: the 3D UNet whose encoder is the modified ResNet (50/101/152)."""
import torch
import torch.nn as nn

from .resnet3d import _ResNetStages
from ._unet_body import _UNetBody
from .unet3d import Down_3d, OutConv_3d, Up_3d


class UNet_3d_resnet_encoder(_ResNetStages, _UNetBody, nn.Module):
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
        self.down4 = Down_3d(base_c * 8, base_c * 16 // factor)  # built, never called (the article's)
        self._build_decoder(Up_3d, OutConv_3d, num_classes, bilinear, base_c)

        self._build_stem_and_stages(in_channels, block, layers, shortcut_type)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(*self._stages(x))
