"""The DoubleConv layers, UNet encoder, decoder and forward passes, shared by the article's three UNets.

Parametrized by the part classes (2D or 3D), registering modules in the article's order, so names,
state_dict order and the seeded initial weights stay exactly the article's.
"""
import torch.nn as nn

from .stage_prints import stage_print


def double_conv_layers(conv, batch_norm, in_channels, out_channels, mid_channels=None):
    """The six layers of the article's DoubleConv (2D or 3D): (3x3 conv without bias, BN, ReLU) twice."""
    if mid_channels is None:
        mid_channels = out_channels
    return (
        conv(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
        batch_norm(mid_channels),
        nn.ReLU(inplace=True),
        conv(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
        batch_norm(out_channels),
        nn.ReLU(inplace=True),
    )


class _UNetBody:
    def _build_encoder(self, double_conv, down, in_channels, bilinear, base_c):
        factor = 2 if bilinear else 1
        self.in_conv = double_conv(in_channels, base_c)
        self.down1 = down(base_c, base_c * 2)
        self.down2 = down(base_c * 2, base_c * 4)
        self.down3 = down(base_c * 4, base_c * 8)
        self.down4 = down(base_c * 8, base_c * 16 // factor)

    def _build_decoder(self, up, out_conv, num_classes, bilinear, base_c):
        factor = 2 if bilinear else 1
        self.up1 = up(base_c * 16, base_c * 8 // factor, bilinear)
        self.up2 = up(base_c * 8, base_c * 4 // factor, bilinear)
        self.up3 = up(base_c * 4, base_c * 2 // factor, bilinear)
        self.up4 = up(base_c * 2, base_c, bilinear)
        self.out_conv = out_conv(base_c, num_classes)

    def _encode(self, x, prints: bool):
        stages = [self.in_conv(x)]
        for down in (self.down1, self.down2, self.down3, self.down4):
            if prints:
                stage_print(f"x{len(stages)}=", stages[-1])
            stages.append(down(stages[-1]))
        if prints:
            stage_print("x5=", stages[-1])
        return stages

    def _decode(self, x1, x2, x3, x4, x5):
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.out_conv(x)
