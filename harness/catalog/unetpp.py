"""3D UNet++ (Zhou et al. 2018, "UNet++: A Nested U-Net Architecture for Medical Image Segmentation"),
plain and with an EfficientNet-B0 encoder: the article's closing question answered with code.

Not the article's code: the article only sketches a 2D ``EfficientUNetPlusPlus`` that would not run.
What these follow:
- **Nested skip pathways** (Zhou et al., Fig. 1): node ``X(i,j)`` (level ``i``, column ``j``) is
  ``H([X(i,0), ..., X(i,j-1), Up(X(i+1,j-1))])``; the encoder column is ``X(i,0)``, i = 0..4; the
  output comes from ``X(0,4)`` (or, with ``deep_supervision``, from ``X(0,1)..X(0,4)``, one 1x1x1 head
  each, returned as a tuple shallow to deep). ``Up`` is trilinear x2 (``align_corners=True``, as the
  article's ``Up_3d``); the forward computes the encoder column first, then the columns j = 1..4.
- ``UNetPlusPlus_3d`` (``unetpp3d``): the article's blocks and width: ``DoubleConv_3d`` nodes,
  ``Down_3d`` (max-pool + ``DoubleConv_3d``) encoder, widths ``base_c * 2**i`` with base_c = 64.
- ``EfficientUNetPlusPlus_3d`` (``unetpp3d-effb0``, ``-mbconv``): the encoder is MONAI's
  ``EfficientNetBNFeatures("efficientnet-b0", spatial_dims=3)``: stem (3x3x3, stride 2, 32 channels)
  and the seven MBConv stages of B0 (expansion 1/6, kernels 3,3,5,3,5,5,3, strides 1,2,2,2,1,2,1,
  repeats 1,2,2,3,3,4,1, widths 16,24,40,80,112,192,320, squeeze-excitation 0.25, Swish), built by the
  library, not rewritten here. Its five outputs (strides 2..32; 16, 24, 40, 112, 320 channels) are
  ``X(0..4,0)`` after a 1x1x1 convolution each that adapts the channels to the decoder widths
  (default 32, 64, 128, 256, 512: the widths of Zhou et al.). The decoder nodes are the article's
  ``DoubleConv_3d`` (``decoder_block="conv"``) or MONAI's ``MBConvBlock`` with the answer's settings
  (``decoder_block="mbconv"``: kernel 3, stride 1, expansion 6, squeeze-excitation 0.25). ``X(0,*)`` is at
  half resolution, so the 1x1x1 head's logits are interpolated (trilinear) to the input's size.
  The classifier head MONAI builds (1x1x1 conv to 1280, BN, pooling, dropout, linear) is never called by
  the feature extractor and is dropped, so every parameter counted takes part.
Input sizes (``envelope``, proved in ``suites/test_unetpp.py``): plain: every spatial size a multiple of
16; EfficientNet: every size ``n`` with ``floor(n/2)`` a multiple of 16 (n = 32k or 32k+1, k >= 1). In
training, the deepest level must hold more than one value per channel (batch 2 at the smallest size).
"""
from __future__ import annotations

import importlib.util

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.catalog.registry import Family, Variant, register, register_family
from reference_models import DoubleConv_3d, Down_3d

DEPTH = 5  # levels 0..4
EFFB0_CHANNELS = (16, 24, 40, 112, 320)  # the outputs of EfficientNetBNFeatures("efficientnet-b0")
DECODER_CHANNELS = (32, 64, 128, 256, 512)  # Zhou et al.'s widths
INSTALL = "pip install 'monai>=1.3'  (or: pip install -e '.[unetpp]')"


def monai_available() -> bool:
    return importlib.util.find_spec("monai") is not None


def _require_monai():
    if not monai_available():
        raise ImportError(f"the EfficientNet-B0 UNet++ variants build their encoder with MONAI, which is not "
                          f"installed. Way out: {INSTALL}")


def mbconv_block(in_channels: int, out_channels: int) -> nn.Module:
    """The answer's ``MBConvBlock(in_c, out_c, expand_ratio=6, kernel_size=3, stride=1)``, in 3D, from MONAI."""
    _require_monai()
    from monai.networks.nets.efficientnet import MBConvBlock
    return MBConvBlock(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, kernel_size=3, stride=1,
                       image_size=[64, 64, 64],  # only sets the 'same' padding: 1 per side at stride 1 for any size
                       expand_ratio=6, se_ratio=0.25, id_skip=True, drop_connect_rate=None)


DECODER_BLOCKS = {"conv": DoubleConv_3d, "mbconv": mbconv_block}


class NestedDecoder(nn.Module):
    """The nodes ``X(i,j)``, j >= 1, of UNet++ over an encoder column of widths ``widths``."""

    def __init__(self, widths, block: str = "conv"):
        super().__init__()
        if block not in DECODER_BLOCKS:
            raise ValueError(f"decoder_block must be one of {sorted(DECODER_BLOCKS)}, not {block!r}")
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=True)
        make = DECODER_BLOCKS[block]
        for j in range(1, DEPTH):
            for i in range(DEPTH - j):
                self.add_module(f"x{i}_{j}", make(widths[i] * j + widths[i + 1], widths[i]))

    def forward(self, column: list[torch.Tensor]) -> list[torch.Tensor]:
        """``column`` = [X(0,0), ..., X(4,0)]; returns [X(0,1), ..., X(0,4)]."""
        nodes = {(i, 0): x for i, x in enumerate(column)}
        for j in range(1, DEPTH):
            for i in range(DEPTH - j):
                inputs = [nodes[i, k] for k in range(j)] + [self.up(nodes[i + 1, j - 1])]
                nodes[i, j] = getattr(self, f"x{i}_{j}")(torch.cat(inputs, dim=1))
        return [nodes[0, j] for j in range(1, DEPTH)]


class _Heads(nn.Module):
    def __init__(self, width: int, num_classes: int, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.columns = tuple(range(1, DEPTH)) if deep_supervision else (DEPTH - 1,)
        for j in self.columns:  # out{j}: the 1x1x1 head on X(0,j)
            self.add_module(f"out{j}", nn.Conv3d(width, num_classes, kernel_size=1))

    def forward(self, top: list[torch.Tensor], size=None):
        outs = [getattr(self, f"out{j}")(top[j - 1]) for j in self.columns]
        if size is not None:
            outs = [F.interpolate(o, size=size, mode="trilinear", align_corners=True) for o in outs]
        return tuple(outs) if self.deep_supervision else outs[0]


class UNetPlusPlus_3d(nn.Module):
    """3D UNet++ with the article's ``DoubleConv_3d`` blocks and base width (nodes of width base_c * 2**i).

    ``X(0,0)`` is ``DoubleConv_3d(in_channels, base_c)``; ``X(i,0)`` is ``Down_3d`` (2x2x2 max-pool, then
    ``DoubleConv_3d``). Output: logits ``(N, num_classes, *input size)``, or with ``deep_supervision`` a
    tuple of four (from ``X(0,1)``..``X(0,4)``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_c: int = 64, deep_supervision: bool = False):
        super().__init__()
        widths = [base_c * 2 ** i for i in range(DEPTH)]
        self.x0_0 = DoubleConv_3d(in_channels, widths[0])
        for i in range(1, DEPTH):
            self.add_module(f"x{i}_0", Down_3d(widths[i - 1], widths[i]))
        self.decoder = NestedDecoder(widths, "conv")
        self.head = _Heads(widths[0], num_classes, deep_supervision)

    def forward(self, x: torch.Tensor):
        column = [self.x0_0(x)]
        for i in range(1, DEPTH):
            column.append(getattr(self, f"x{i}_0")(column[-1]))
        return self.head(self.decoder(column))


class EfficientUNetPlusPlus_3d(nn.Module):
    """3D UNet++ whose encoder is MONAI's 3D EfficientNet-B0 (see the module docstring)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, decoder_block: str = "conv",
                 decoder_channels=DECODER_CHANNELS, deep_supervision: bool = False):
        super().__init__()
        _require_monai()
        from monai.networks.nets import EfficientNetBNFeatures
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != DEPTH:
            raise ValueError(f"decoder_channels needs {DEPTH} widths, got {list(decoder_channels)}")
        self.encoder = EfficientNetBNFeatures("efficientnet-b0", pretrained=False, progress=False, spatial_dims=3,
                                              in_channels=in_channels)
        for unused in ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            delattr(self.encoder, unused)  # the classifier head: EfficientNetBNFeatures.forward never calls it
        # X(i,0): the encoder's outputs, channels adapted by a 1x1x1 convolution where they differ
        for i, (got, want) in enumerate(zip(EFFB0_CHANNELS, decoder_channels)):
            self.add_module(f"x{i}_0", nn.Conv3d(got, want, kernel_size=1) if got != want else nn.Identity())
        self.decoder = NestedDecoder(decoder_channels, decoder_block)
        self.head = _Heads(decoder_channels[0], num_classes, deep_supervision)

    def forward(self, x: torch.Tensor):
        features = self.encoder(x)
        column = [getattr(self, f"x{i}_0")(f) for i, f in enumerate(features)]
        return self.head(self.decoder(column), size=x.shape[2:])


def encoder_parameters(model: nn.Module) -> int:
    """Parameters of the encoder column: X(i,0) (and the EfficientNet that feeds it)."""
    modules = [model.get_submodule(f"x{i}_0") for i in range(DEPTH)]
    if isinstance(model, EfficientUNetPlusPlus_3d):
        modules.append(model.encoder)
    return sum(p.numel() for m in modules for p in m.parameters())


# ---------------------------------------------------------------------------------------------------
# Not the article's code: UNet++ in 3D, the article's closing question (issue 12). harness/models/unetpp.py
# says what each follows. The EfficientNet-B0 variants need MONAI (extra "unetpp").
# ---------------------------------------------------------------------------------------------------

# UNet++ answers the article's closing question: its own source ("follow-up"), so the article's sweeps and
# regression facts do not carry it unless asked (``--models 'unetpp3d*'``, ``--profile compare``).
_UNETPP_STAGES = ("x0_0", "x1_0", "x2_0", "x3_0", "x4_0")  # UNet++'s encoder column X(i,0)
register_family(Family("unetpp3d", "follow-up", _UNETPP_STAGES, envelope="unetpp"))
register_family(Family("unetpp3d-effb0", "follow-up", _UNETPP_STAGES, envelope="unetpp", library="monai"))
register(Variant(
    "unetpp3d", "unetpp3d", UNetPlusPlus_3d,
    dict(in_channels=1, num_classes=2, base_c=64, deep_supervision=False), (1, 1, 64, 64, 64),
    "3D UNet++ (Zhou et al. 2018), the article's DoubleConv_3d blocks and base_c=64: the reference point",
))
for _name, _block, _what in (("unetpp3d-effb0", "conv", "DoubleConv_3d decoder"),
                             ("unetpp3d-effb0-mbconv", "mbconv", "MBConv decoder (the answer's optional step)")):
    register(Variant(
        _name, "unetpp3d-effb0", EfficientUNetPlusPlus_3d,
        dict(in_channels=1, num_classes=2, decoder_block=_block, decoder_channels=DECODER_CHANNELS,
             deep_supervision=False), (1, 1, 64, 64, 64),
        f"3D UNet++, MONAI EfficientNet-B0 encoder, {_what}",
    ))
