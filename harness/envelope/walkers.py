"""The hand-written envelopes: PyTorch's size arithmetic walked through each family's forward pass (the
article's UNets, ResNet and UNet with a ResNet encoder; UNet++), raising ``Refusal`` at the first
constraint an input breaks. No tensors. Proved both ways against the real models in the suites."""
from __future__ import annotations

import math

from harness.catalog.registry import Shape
from harness.catalog.unetpp import DEPTH
from harness.envelope.verdict import Refusal

# --- size arithmetic, as PyTorch does it ------------------------------------------------------------

def check_domain(shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise Refusal("rank", f"the input must have {rank} dimensions (N, C, *spatial), not {len(shape)}")
    if shape[0] < 0 or min(shape[1:]) < 1:  # a batch of 0 runs (an empty output); nothing else may be 0
        raise Refusal("empty", "the batch must be 0 or more and the channels and spatial sizes at least 1")


def _conv(got, weight_dim0, expected, where, key):
    """A convolution's checks in PyTorch's order: first a weight whose first dimension is empty (the
    output channels; the input channels of a transposed convolution), then the input's channel count."""
    if weight_dim0 == 0:
        raise Refusal("zero-width", f"{where} would have an empty weight (0 channels, from {key}=0) and "
                                     f"PyTorch refuses to run an empty convolution", f"set {key} to 1 or more")
    _expect_channels(got, expected, where)


def _pool_or_conv(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _halve_by_maxpool(sizes, level):
    out = [_pool_or_conv(n, 2, 2, 0) for n in sizes]
    if min(out) < 1:
        raise Refusal("min-size", f"MaxPool(2) number {level} gets spatial sizes {tuple(sizes)} and one "
                                   f"of them is below 2; the encoder halves each size four times, so "
                                   f"every size must be at least 16")
    return out


def _batchnorm_train(n_batch, sizes, where):
    if n_batch * math.prod(sizes) == 1:
        raise Refusal("train-batchnorm", f"in training, BatchNorm at {where} sees one value per channel "
                                          f"(batch 1, spatial {tuple(sizes)}) and PyTorch refuses that")


def _expect_channels(got, expected, where):
    if got != expected:
        raise Refusal("channels" if where == "the first convolution" else "decoder-channels",
                       f"{where} expects {expected} channel{'' if expected == 1 else 's'} but gets {got}")


def _no_input_channels(in_channels):
    """in_channels=0 builds, but its first convolution then wants a tensor with no channels, which
    never runs (the domain refuses one; the real model fails on it too)."""
    if in_channels == 0:
        raise Refusal("zero-width", "in_channels=0 makes the first convolution take tensors with no "
                                     "channels, and no such input runs", "set in_channels to 1 or more")


def _padded_sizes(up, skip, spatial_dims):
    """Sizes after the article's F.pad of the upsampled tensor towards the skip tensor."""
    diffs = [s - u for s, u in zip(skip, up)]
    if spatial_dims == 2:  # (H, W): the 2D code pads each dimension by its own difference
        padded = [up[0] + diffs[0], up[1] + diffs[1]]
    else:  # (D, H, W): padded by the differences of (W, D, H): the article's ordering quirk
        padded = [up[0] + diffs[2], up[1] + diffs[0], up[2] + diffs[1]]
    if min(padded) < 1:
        raise Refusal("parity", f"F.pad would leave sizes {tuple(padded)}")
    return padded


def _up_block(x, skip, in_channels, out_channels, bilinear, level, spatial_dims):
    """Up / Up_3d: upsample x by 2 (trilinear keeps channels, transposed conv halves them), pad, cat,
    then DoubleConv(in_channels, out_channels, mid) with mid = in_channels // 2 (bilinear) or out."""
    n_batch, channels, *sizes = x
    if not bilinear:
        _conv(channels, in_channels, in_channels, f"up{level}'s transposed convolution", "base_c")
        channels = in_channels // 2
    padded = _padded_sizes([2 * n for n in sizes], skip[2:], spatial_dims)
    if padded != list(skip[2:]):
        raise Refusal("parity", f"up{level} concatenates the skip connection of size {tuple(skip[2:])} "
                                 f"with the upsampled tensor padded to {tuple(padded)}: the article's 3D "
                                 f"padding gives each dimension another dimension's difference, which only "
                                 f"works when the sizes at each level have the same parity")
    mid = in_channels // 2 if bilinear else out_channels
    _conv(skip[1] + channels, mid, in_channels, f"up{level}'s DoubleConv", "base_c")
    _conv(mid, out_channels, mid, f"up{level}'s DoubleConv", "base_c")
    return (n_batch, out_channels, *skip[2:])


def _decoder(stages, base_c, num_classes, bilinear, spatial_dims):
    factor = 2 if bilinear else 1
    x = stages[4]
    for level, (in_channels, skip) in enumerate(
            zip((base_c * 16, base_c * 8, base_c * 4, base_c * 2), reversed(stages[:4])), start=1):
        # DoubleConv's output channels: base_c*8//factor, ... and base_c at the last level
        out_channels = base_c if level == 4 else in_channels // 2 // factor
        x = _up_block(x, skip, in_channels, out_channels, bilinear, level, spatial_dims)
    _conv(x[1], num_classes, base_c, "out_conv", "num_classes")
    return (x[0], num_classes, *x[2:])


# --- the families ---------------------------------------------------------------------------------

def _walk_unet(args, shape, train, device, precision):
    n_batch, channels, *sizes = shape
    base_c, factor = args["base_c"], 2 if args["bilinear"] else 1
    _conv(channels, base_c, args["in_channels"], "the first convolution", "base_c")
    _no_input_channels(args["in_channels"])
    widths = (base_c, base_c * 2, base_c * 4, base_c * 8, base_c * 16 // factor)
    stage_sizes = [sizes]
    for level in range(1, 5):  # each level's DoubleConv has BatchNorms; checked in forward order
        if train:
            _batchnorm_train(n_batch, stage_sizes[-1], "in_conv" if level == 1 else f"down{level - 1}")
        stage_sizes.append(_halve_by_maxpool(stage_sizes[-1], level))
    if train:
        _batchnorm_train(n_batch, stage_sizes[4], "down4")
    stages = [(n_batch, c, *s) for c, s in zip(widths, stage_sizes)]
    return stages, _decoder(stages, base_c, args["num_classes"], args["bilinear"], len(sizes))


def _resnet_stages(args, shape, in_channels, train, device, precision):
    """Stem (stride 1) and layer1..layer4 of the article's ResNet: x1..x5."""
    block, layers = args["block"], args["layers"]
    if getattr(block, "__name__", None) not in ("Bottleneck", "BasicBlock"):
        raise Refusal("block", f"the envelope knows Bottleneck and BasicBlock, not {block!r}")
    if len(layers) < 4:
        raise Refusal("layers", f"layers needs four stage counts, got {list(layers)}")
    n_batch, channels, *sizes = shape
    _expect_channels(channels, in_channels, "the first convolution")
    _no_input_channels(in_channels)
    if train:
        _batchnorm_train(n_batch, sizes, "bn1")
    if args["shortcut_type"] == "A" and device != "cpu" and (
            args["no_cuda"] or device != "cuda" or precision != "fp32"):
        raise Refusal("shortcut-A-device", f"shortcut A builds its zero channels on the CPU and moves them "
                                            f"only for CUDA float32 without no_cuda; on {device} with "
                                            f"{precision} torch.cat meets tensors on two devices")
    expansion = block.expansion
    stage_sizes = [sizes, [_pool_or_conv(n, 3, 2, 1) for n in sizes]]  # stem, maxpool (layer1: stride 1)
    for _ in range(3):
        stage_sizes.append([_pool_or_conv(n, 3, 2, 1) for n in stage_sizes[-1]])  # stride-2 3x3, pad 1
    if train:
        for level, level_sizes in enumerate(stage_sizes[1:], start=1):
            _batchnorm_train(n_batch, level_sizes, f"layer{level}")
    widths = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
    return [(n_batch, c, *s) for c, s in zip(widths, stage_sizes)]


def _walk_resnet(args, shape, train, device, precision):
    stages = _resnet_stages(args, shape, 1, train, device, precision)  # the stem takes one channel
    if args["include_top"]:
        return stages, (shape[0], args["num_classes"])
    return stages, stages[4]


def _walk_unet_resnet(args, shape, train, device, precision):
    stages = _resnet_stages(args, shape, args["in_channels"], train, device, precision)
    return stages, _decoder(stages, args["base_c"], args["num_classes"], args["bilinear"], 3)


# --- UNet++ (harness.catalog.unetpp; not the article's code) ------------------------------------------

def _refuse(constraint, reason):
    raise Refusal(constraint, reason)


def _unetpp_batchnorm(n_batch, sizes, where, train):
    if train and n_batch * math.prod(sizes) == 1:
        _refuse("train-batchnorm", f"in training, BatchNorm at {where} sees one value per channel "
                                   f"(batch 1, spatial {tuple(sizes)}) and PyTorch refuses that")


def walk_unetpp(args, shape, train, device, precision):
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
            _unetpp_batchnorm(n_batch, current, f"EfficientNet-B0's {where}", train)
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
            _unetpp_batchnorm(n_batch, current, f"X({level},0)", train)
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


# The walkers, by the name a Family record gives in its ``envelope`` field.
WALKERS = {"unet": _walk_unet, "resnet": _walk_resnet, "unet-resnet": _walk_unet_resnet, "unetpp": walk_unetpp}
