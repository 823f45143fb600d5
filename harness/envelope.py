"""Which inputs and settings each faithful model accepts: an exact shape interpreter, no tensors.

``check(model, input_shape, overrides, mode, device, precision)`` walks the forward pass of the
article's code with PyTorch's size arithmetic and returns a ``Verdict``: supported or not, the output
and stage shapes, and for a refusal the constraint that breaks first (in forward order), a sentence
saying why, and a supported shape nearby where one exists. The suites prove it both ways against
running the real models (suites/test_envelope.py).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .models.unetpp import walk as _unetpp_walk
from .registry import Shape, get_variant

MODES = ("inference", "train")

# What to do about each constraint when no nearby input shape helps.
FIXES = {
    "rank": "pass a tensor of shape (N, C, *spatial)",
    "empty": "use a batch and sizes of at least 1",
    "channels": "pass as many input channels as the model's in_channels (or set in_channels)",
    "min-size": "make every spatial size at least 16",
    "parity": "use sizes that are equal modulo 16 (multiples of 16 always work)",
    "train-batchnorm": "use a batch of 2 or more, or a larger input",
    "decoder-channels": "keep base_c=64, bilinear=False and an expansion-2 block (Bottleneck), as the article does",
    "layers": "give four stage counts, e.g. layers=3,4,6,3",
    "shortcut-A-device": "use shortcut_type=B, or float32 without autocast and no_cuda=False on CUDA",
    "block": "use Bottleneck or BasicBlock",
    "effb0-min-size": "make every spatial size at least 32 (EfficientNet-B0 halves each size five times)",
    "unetpp-multiple": "use sizes that are multiples of 16 (unetpp3d) or of 32 (the EfficientNet-B0 variants)",
}


class _Refusal(Exception):
    def __init__(self, constraint: str, reason: str):
        super().__init__(reason)
        self.constraint, self.reason = constraint, reason


@dataclass(frozen=True)
class Verdict:
    model: str
    input_shape: Shape
    mode: str
    supported: bool
    output_shape: Shape | None = None
    stage_shapes: tuple[Shape, ...] = ()
    constraint: str | None = None
    reason: str | None = None
    suggestion: Shape | None = None

    def message(self) -> str:
        if self.supported:
            return f"{self.model} accepts {self.input_shape} ({self.mode}): output {self.output_shape}"
        text = f"{self.model} cannot run input {self.input_shape} ({self.mode}): {self.reason}."
        if self.suggestion is not None:
            text += f" Nearest supported input: {self.suggestion}."
        else:
            text += f" Way out: {FIXES[self.constraint]}."
        return text


def check(model: str, input_shape, overrides: Mapping[str, Any] | None = None, mode: str = "inference",
          device: str = "cpu", precision: str = "fp32", suggest: bool = True) -> Verdict:
    """Will ``model`` (with constructor ``overrides``) run ``input_shape`` in ``mode``?"""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    variant = get_variant(model)
    args = variant.constructor_args(**(overrides or {}))
    shape = tuple(int(n) for n in input_shape)
    walk = _WALKERS[variant.family]
    try:
        _check_domain(shape, 2 + variant.spatial_dims)
        stages, output = walk(args, shape, mode == "train", device, precision)
    except _Refusal as refusal:
        nearby = None
        if suggest and refusal.constraint not in ("rank", "empty"):
            nearby = _nearest_supported(walk, args, shape, mode, device, precision)
        return Verdict(model, shape, mode, False, constraint=refusal.constraint, reason=refusal.reason,
                       suggestion=nearby)
    return Verdict(model, shape, mode, True, output, tuple(stages))


# --- size arithmetic, as PyTorch does it ------------------------------------------------------------

def _check_domain(shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise _Refusal("rank", f"the input must have {rank} dimensions (N, C, *spatial), not {len(shape)}")
    if min(shape) < 1:
        raise _Refusal("empty", "every dimension must be at least 1")


def _pool_or_conv(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _halve_by_maxpool(sizes, level):
    out = [_pool_or_conv(n, 2, 2, 0) for n in sizes]
    if min(out) < 1:
        raise _Refusal("min-size", f"MaxPool(2) number {level} gets spatial sizes {tuple(sizes)} and one "
                                   f"of them is below 2; the encoder halves each size four times, so "
                                   f"every size must be at least 16")
    return out


def _batchnorm_train(n_batch, sizes, where):
    if n_batch * math.prod(sizes) == 1:
        raise _Refusal("train-batchnorm", f"in training, BatchNorm at {where} sees one value per channel "
                                          f"(batch 1, spatial {tuple(sizes)}) and PyTorch refuses that")


def _expect_channels(got, expected, where):
    if got != expected:
        raise _Refusal("channels" if where == "the first convolution" else "decoder-channels",
                       f"{where} expects {expected} channel{'' if expected == 1 else 's'} but gets {got}")


def _padded_sizes(up, skip, spatial_dims):
    """Sizes after the article's F.pad of the upsampled tensor towards the skip tensor."""
    diffs = [s - u for s, u in zip(skip, up)]
    if spatial_dims == 2:  # (H, W): the 2D code pads each dimension by its own difference
        padded = [up[0] + diffs[0], up[1] + diffs[1]]
    else:  # (D, H, W): padded by the differences of (W, D, H): the article's ordering quirk
        padded = [up[0] + diffs[2], up[1] + diffs[0], up[2] + diffs[1]]
    if min(padded) < 1:
        raise _Refusal("parity", f"F.pad would leave sizes {tuple(padded)}")
    return padded


def _up_block(x, skip, in_channels, bilinear, level, spatial_dims):
    """Up / Up_3d: upsample x by 2 (trilinear keeps channels, transposed conv halves them), pad, cat."""
    n_batch, channels, *sizes = x
    if not bilinear:
        _expect_channels(channels, in_channels, f"up{level}'s transposed convolution")
        channels = in_channels // 2
    padded = _padded_sizes([2 * n for n in sizes], skip[2:], spatial_dims)
    if padded != list(skip[2:]):
        raise _Refusal("parity", f"up{level} concatenates the skip connection of size {tuple(skip[2:])} "
                                 f"with the upsampled tensor padded to {tuple(padded)}: the article's 3D "
                                 f"padding gives each dimension another dimension's difference, which only "
                                 f"works when the sizes at each level have the same parity")
    _expect_channels(skip[1] + channels, in_channels, f"up{level}'s DoubleConv")
    return (n_batch, skip[1] + channels, *skip[2:])


def _decoder(stages, base_c, bilinear, spatial_dims):
    factor = 2 if bilinear else 1
    x = stages[4]
    for level, (in_channels, skip) in enumerate(
            zip((base_c * 16, base_c * 8, base_c * 4, base_c * 2), reversed(stages[:4])), start=1):
        x = _up_block(x, skip, in_channels, bilinear, level, spatial_dims)
        # DoubleConv's output channels: base_c*8//factor, ... and base_c at the last level
        out_c = base_c if level == 4 else in_channels // 2 // factor
        x = (x[0], out_c, *x[2:])
    return x


# --- the families ---------------------------------------------------------------------------------

def _walk_unet(args, shape, train, device, precision):
    n_batch, channels, *sizes = shape
    base_c, factor = args["base_c"], 2 if args["bilinear"] else 1
    _expect_channels(channels, args["in_channels"], "the first convolution")
    widths = (base_c, base_c * 2, base_c * 4, base_c * 8, base_c * 16 // factor)
    stage_sizes = [sizes]
    for level in range(1, 5):  # each level's DoubleConv has BatchNorms; checked in forward order
        if train:
            _batchnorm_train(n_batch, stage_sizes[-1], "in_conv" if level == 1 else f"down{level - 1}")
        stage_sizes.append(_halve_by_maxpool(stage_sizes[-1], level))
    if train:
        _batchnorm_train(n_batch, stage_sizes[4], "down4")
    stages = [(n_batch, c, *s) for c, s in zip(widths, stage_sizes)]
    x = _decoder(stages, base_c, args["bilinear"], len(sizes))
    return stages, (n_batch, args["num_classes"], *x[2:])


def _resnet_stages(args, shape, in_channels, train, device, precision):
    """Stem (stride 1) and layer1..layer4 of the article's ResNet: x1..x5."""
    block, layers = args["block"], args["layers"]
    if getattr(block, "__name__", None) not in ("Bottleneck", "BasicBlock"):
        raise _Refusal("block", f"the envelope knows Bottleneck and BasicBlock, not {block!r}")
    if len(layers) < 4:
        raise _Refusal("layers", f"layers needs four stage counts, got {list(layers)}")
    n_batch, channels, *sizes = shape
    _expect_channels(channels, in_channels, "the first convolution")
    if train:
        _batchnorm_train(n_batch, sizes, "bn1")
    if args["shortcut_type"] == "A" and device != "cpu" and (
            args["no_cuda"] or device != "cuda" or precision != "fp32"):
        raise _Refusal("shortcut-A-device", f"shortcut A builds its zero channels on the CPU and moves them "
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
    x = _decoder(stages, args["base_c"], args["bilinear"], 3)
    return stages, (shape[0], args["num_classes"], *x[2:])


_WALKERS = {"unet2d": _walk_unet, "unet3d": _walk_unet, "resnet3d": _walk_resnet,
            "unet3d-resnet": _walk_unet_resnet}
_WALKERS["unetpp3d"] = _unetpp_walk  # harness/models/unetpp.py: UNet++ (not the article's code)


# --- a supported shape nearby -----------------------------------------------------------------------

def _nearest_supported(walk, args, shape, mode, device, precision) -> Shape | None:
    """The closest shape (fewest changed elements, then smallest change) that the model accepts, among
    the input with the right channel count, a batch of 2, and each spatial size rounded to 16 or set
    to one of the other spatial sizes (equal sizes never trip the padding quirk)."""
    n_batch, channels, *sizes = shape
    expected_channels = args.get("in_channels", 1) if "include_top" not in args else 1
    batches = {n_batch, 2} if n_batch == 1 else {n_batch}
    options = [sorted(batches), sorted({channels, expected_channels})]
    for n in sizes:
        options.append(sorted({n, max(16, 16 * math.ceil(n / 16)), max(16, 16 * (n // 16)), *sizes}))
    candidates = sorted(itertools.product(*options), key=lambda c: (
        sum(a != b for a, b in zip(c, shape)), sum(abs(a - b) for a, b in zip(c, shape)), c))
    for candidate in candidates:
        try:
            walk(args, candidate, mode == "train", device, precision)
        except _Refusal:
            continue
        return tuple(candidate)
    return None
