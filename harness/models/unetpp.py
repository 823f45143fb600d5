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
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

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


# --- the envelope: an exact rule, no tensors ------------------------------------------------------------
# Registered with harness.envelope (_WALKERS["unetpp3d"]); proved against the real models in the suites.

def _refuse(constraint, reason):
    from harness.envelope import _Refusal
    raise _Refusal(constraint, reason)


def _batchnorm(n_batch, sizes, where, train):
    if train and n_batch * math.prod(sizes) == 1:
        _refuse("train-batchnorm", f"in training, BatchNorm at {where} sees one value per channel "
                                   f"(batch 1, spatial {tuple(sizes)}) and PyTorch refuses that")


def walk(args, shape, train, device, precision):
    """(stages X(0..4,0), output) for ``shape``, or a refusal naming the first constraint the forward breaks."""
    n_batch, channels, *sizes = shape
    efficient = "decoder_block" in args
    if channels != args["in_channels"]:
        _refuse("channels", f"the first convolution expects {args['in_channels']} channel"
                            f"{'' if args['in_channels'] == 1 else 's'} but gets {channels}")
    if efficient:
        widths = tuple(int(c) for c in args["decoder_channels"])
        # EfficientNet-B0 in MONAI pads stride-2 convolutions by the 'same' padding of a 224 input:
        # (0, 1) for kernel 3, (1, 2) for kernel 5; both give floor(n / 2) and need n >= 2.
        level_sizes, current = [], list(sizes)
        for level, where in enumerate(("the stem", "stage 2", "stage 3", "stage 4", "stage 6")):
            if min(current) < 2:
                _refuse("effb0-min-size", f"the stride-2 convolution of EfficientNet-B0's {where} gets spatial sizes "
                                    f"{tuple(current)}, one of them below 2; the encoder halves each size five "
                                    f"times, so every size must be at least 32")
            current = [n // 2 for n in current]
            _batchnorm(n_batch, current, f"EfficientNet-B0's {where}", train)
            level_sizes.append(current)
    else:
        widths = tuple(args["base_c"] * 2 ** i for i in range(DEPTH))
        level_sizes, current = [], list(sizes)
        for level in range(DEPTH):
            if level:
                if min(current) < 2:
                    _refuse("min-size", f"MaxPool(2) number {level} gets spatial sizes {tuple(current)}, one of "
                                        f"them below 2; the encoder halves each size four times, so every size "
                                        f"must be at least 16")
                current = [n // 2 for n in current]
            _batchnorm(n_batch, current, f"X({level},0)", train)
            level_sizes.append(current)
    for level in range(DEPTH - 1):  # X(i,1) concatenates X(i,0) with X(i+1,0) upsampled x2
        if any(n % 2 for n in level_sizes[level]):
            step = 32 if efficient else 16
            _refuse("unetpp-multiple", f"node X({level},1) concatenates X({level},0) of size "
                                       f"{tuple(level_sizes[level])} with X({level + 1},0) upsampled x2 to "
                                       f"{tuple(2 * n for n in level_sizes[level + 1])}: every size must "
                                       f"{'be a multiple of 16' if step == 16 else 'halve to a multiple of 16 (32k or 32k+1)'}")
    stages = tuple((n_batch, w, *s) for w, s in zip(widths, level_sizes))
    return stages, (n_batch, args["num_classes"], *sizes)
