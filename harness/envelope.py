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
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from .overrides import format_value
from .probed_envelope import MetaProber
from .models.unetpp import walk as _unetpp_walk
from .registry import Shape, get_variant

MODES = ("inference", "train")

# What to do about each constraint when no nearby input shape helps.
FIXES = {
    "unavailable": "install the library the model needs",
    "divisibility": "make every spatial size a multiple of what the model needs (see the reason)",
    "forward": "check the model's own requirements (`python -m harness show MODEL` prints what was probed)",
    "constructor": "use constructor values the class accepts (`python -m harness show MODEL` lists the defaults)",
    "rank": "pass a tensor of shape (N, C, *spatial)",
    "empty": "use a batch of 0 or more and channel and spatial sizes of at least 1",
    "zero-width": "give base_c, in_channels and num_classes values of 1 or more",
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


# What each constructor argument must be, for the way out of a constructor refusal.
ARGUMENT_HINTS = {
    "base_c": "a positive integer",
    "in_channels": "a positive integer (the input's channel count)",
    "num_classes": "a positive integer",
    "layers": "four integer stage counts",
    "block": "Bottleneck or BasicBlock",
    "bilinear": "true or false",
    "include_top": "true or false",
    "no_cuda": "true or false",
    "shortcut_type": "A or B",
}


class _Refusal(Exception):
    def __init__(self, constraint: str, reason: str, way_out: str | None = None):
        super().__init__(reason)
        self.constraint, self.reason, self.way_out = constraint, reason, way_out


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
    # Set when no input at all runs with these settings (then there is never a suggestion): the
    # constraint that blocks every input ("constructor", "zero-width", "decoder-channels", ...).
    settings_constraint: str | None = None
    way_out: str | None = None

    def message(self) -> str:
        """One paragraph: the verdict, and for a refusal why and either a nearby input or the way out."""
        if self.supported:
            return f"{self.model} accepts {self.input_shape} ({self.mode}): output {self.output_shape}"
        text = f"{self.model} cannot run input {self.input_shape} ({self.mode}): {self.reason}."
        if self.suggestion is not None:
            text += f" Nearest supported input: {self.suggestion}."
        else:
            text += f" Way out: {self.way_out or FIXES[self.settings_constraint or self.constraint]}."
        return " ".join(text.split())


def check(model: str, input_shape, overrides: Mapping[str, Any] | None = None, mode: str = "inference",
          device: str = "cpu", precision: str = "fp32", suggest: bool = True) -> Verdict:
    """Will ``model`` (with constructor ``overrides``) run ``input_shape`` in ``mode``?"""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    variant = get_variant(model)
    overrides = dict(overrides or {})
    args = variant.constructor_args(**overrides)
    shape = tuple(int(n) for n in input_shape)
    missing = variant.unavailable_reason()
    if missing:
        return Verdict(model, shape, mode, False, constraint="unavailable", reason=f"{model} {missing.split(':')[0]}",
                       settings_constraint="unavailable", way_out=missing.split(": ", 1)[-1])
    built = _build_problem(model, overrides)  # refused before anything runs when the class cannot be built
    if built is not None:
        return Verdict(model, shape, mode, False, constraint="constructor", reason=built.reason,
                       settings_constraint="constructor", way_out=built.way_out)
    if variant.record.envelope is None:
        return _check_probed(variant, overrides, shape, mode, suggest)
    walk = _WALKERS[variant.record.envelope]
    try:
        _check_domain(shape, 2 + variant.spatial_dims)
        stages, output = walk(args, shape, mode == "train", device, precision)
    except _Refusal as refusal:
        blocker = _settings_problem(walk, args, variant, mode, device, precision)
        if blocker is not None:  # no input runs with these settings: say so and give the way out
            reason = refusal.reason
            if blocker.constraint != refusal.constraint or blocker.reason != refusal.reason:
                reason += f"; and no input runs with these settings: {blocker.reason}"
            return Verdict(model, shape, mode, False, constraint=refusal.constraint, reason=reason,
                           settings_constraint=blocker.constraint,
                           way_out=blocker.way_out or FIXES[blocker.constraint])
        nearby = None
        if suggest and refusal.constraint not in ("rank", "empty"):
            nearby = _nearest_supported(walk, args, shape, mode, device, precision)
        return Verdict(model, shape, mode, False, constraint=refusal.constraint, reason=refusal.reason,
                       suggestion=nearby, way_out=refusal.way_out)
    return Verdict(model, shape, mode, True, output, tuple(stages))


# --- constructor values: build on the meta device (no memory, no arithmetic), cached ------------------

_BUILD_CACHE: OrderedDict = OrderedDict()
_BUILD_CACHE_SIZE = 1024


def _freeze(value):
    """A hashable key that tells apart values Python calls equal (True and 1, [1] and (1,))."""
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = tuple(_freeze(v) for v in value)
        return (type(value).__name__, tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else items)
    try:
        hash(value)
    except TypeError:
        return (type(value).__qualname__, repr(value))
    return (type(value), value)


def _builds(variant, overrides: Mapping[str, Any]) -> BaseException | None:
    """The exception the class raises when built with these overrides (on meta), or None."""
    key = (variant.name, _freeze(overrides))
    if key in _BUILD_CACHE:
        _BUILD_CACHE.move_to_end(key)
        return _BUILD_CACHE[key]
    error = None
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # zero-element init warnings: no-ops on an empty weight
            variant.builder(**variant.constructor_args(**overrides))
    except Exception as raised:  # whatever the class raises: that is the answer
        error = raised
    _BUILD_CACHE[key] = error
    if len(_BUILD_CACHE) > _BUILD_CACHE_SIZE:
        _BUILD_CACHE.popitem(last=False)
    return error


def _build_problem(model: str, overrides: Mapping[str, Any]) -> _Refusal | None:
    """A constructor refusal naming the culprit argument(s) and what to set them to, or None."""
    variant = get_variant(model)
    error = _builds(variant, overrides)
    if error is None:
        return None
    # The culprits: each override that on its own (the rest left at the defaults) stops the build.
    culprits = [key for key in overrides if _builds(variant, {key: overrides[key]}) is not None] or list(overrides)
    values = ", ".join(f"{key}={format_value(overrides[key])}" for key in culprits) or "its defaults"
    detail = " ".join(f"{type(error).__name__}: {error}".split())
    if len(detail) > 200:
        detail = detail[:197] + "..."
    reason = f"{variant.builder.__name__} cannot be built with {values} ({detail}); nothing was run"
    hints = [f"{key} to {ARGUMENT_HINTS.get(key, 'a value the class accepts')} (default "
             f"{format_value(variant.defaults[key])})" for key in culprits if key in variant.defaults]
    way_out = "set " + "; ".join(hints) if hints else FIXES["constructor"]
    return _Refusal("constructor", reason, way_out)


def _settings_problem(walk, args, variant, mode, device, precision) -> _Refusal | None:
    """The refusal that blocks every input with these settings, or None when some input runs.

    A batch of 2 with the model's channel count and sizes of 64 passes every input constraint
    (channels, min-size, parity, train-batchnorm), so whatever still breaks is the settings' fault.
    """
    argument = variant.record.channels_argument
    channels = args.get(argument, 1) if argument else 1
    try:
        walk(args, (2, channels, *[64] * variant.spatial_dims), mode == "train", device, precision)
    except _Refusal as refusal:
        if variant.family == "unet3d-resnet" and refusal.way_out == "set base_c to 1 or more":
            refusal.way_out = FIXES["decoder-channels"]  # the encoder's decoder fits base_c=64 only
        return refusal
    return None


# --- size arithmetic, as PyTorch does it ------------------------------------------------------------

def _check_domain(shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise _Refusal("rank", f"the input must have {rank} dimensions (N, C, *spatial), not {len(shape)}")
    if shape[0] < 0 or min(shape[1:]) < 1:  # a batch of 0 runs (an empty output); nothing else may be 0
        raise _Refusal("empty", "the batch must be 0 or more and the channels and spatial sizes at least 1")


def _conv(got, weight_dim0, expected, where, key):
    """A convolution's checks in PyTorch's order: first a weight whose first dimension is empty (the
    output channels; the input channels of a transposed convolution), then the input's channel count."""
    if weight_dim0 == 0:
        raise _Refusal("zero-width", f"{where} would have an empty weight (0 channels, from {key}=0) and "
                                     f"PyTorch refuses to run an empty convolution", f"set {key} to 1 or more")
    _expect_channels(got, expected, where)


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


def _no_input_channels(in_channels):
    """in_channels=0 builds, but its first convolution then wants a tensor with no channels, which
    never runs (the domain refuses one; the real model fails on it too)."""
    if in_channels == 0:
        raise _Refusal("zero-width", "in_channels=0 makes the first convolution take tensors with no "
                                     "channels, and no such input runs", "set in_channels to 1 or more")


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


def _up_block(x, skip, in_channels, out_channels, bilinear, level, spatial_dims):
    """Up / Up_3d: upsample x by 2 (trilinear keeps channels, transposed conv halves them), pad, cat,
    then DoubleConv(in_channels, out_channels, mid) with mid = in_channels // 2 (bilinear) or out."""
    n_batch, channels, *sizes = x
    if not bilinear:
        _conv(channels, in_channels, in_channels, f"up{level}'s transposed convolution", "base_c")
        channels = in_channels // 2
    padded = _padded_sizes([2 * n for n in sizes], skip[2:], spatial_dims)
    if padded != list(skip[2:]):
        raise _Refusal("parity", f"up{level} concatenates the skip connection of size {tuple(skip[2:])} "
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
        raise _Refusal("block", f"the envelope knows Bottleneck and BasicBlock, not {block!r}")
    if len(layers) < 4:
        raise _Refusal("layers", f"layers needs four stage counts, got {list(layers)}")
    n_batch, channels, *sizes = shape
    _expect_channels(channels, in_channels, "the first convolution")
    _no_input_channels(in_channels)
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
    return stages, _decoder(stages, args["base_c"], args["num_classes"], args["bilinear"], 3)


# The hand-written interpreters, by the name a Family record gives in its ``envelope`` field.
_WALKERS = {"unet": _walk_unet, "resnet": _walk_resnet, "unet-resnet": _walk_unet_resnet,
            "unetpp": _unetpp_walk}  # harness/models/unetpp.py: UNet++ (not the article's code)


# --- models the harness did not hand-write: probed on the meta device -------------------------------

_PROBERS: dict = {}


def prober(model: str, overrides: Mapping[str, Any] | None = None) -> MetaProber:
    """The (cached) meta-device prober of a variant with these constructor overrides."""
    variant = get_variant(model)
    overrides = dict(overrides or {})
    key = (variant.name, _freeze(overrides))
    if key not in _PROBERS:
        args = variant.constructor_args(**overrides)
        argument = variant.record.channels_argument
        channels = args.get(argument) if argument else None
        hint = channels if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0 else None
        _PROBERS[key] = MetaProber(lambda: variant.builder(**args), variant.spatial_dims, hint)
    return _PROBERS[key]


def _check_probed(variant, overrides, shape, mode, suggest) -> Verdict:
    """Exact by construction: the verdict is a meta forward pass of this very input."""
    model, train = variant.name, mode == "train"
    try:
        _check_domain(shape, 2 + variant.spatial_dims)
    except _Refusal as refusal:
        return Verdict(model, shape, mode, False, constraint=refusal.constraint, reason=refusal.reason)
    probe = prober(model, overrides)
    output, error = probe.run(shape, train)
    if output is not None:
        return Verdict(model, shape, mode, True, output)
    rule = probe.rule()
    n_batch, channels, *sizes = shape
    if rule.min_size is None:
        return Verdict(model, shape, mode, False, constraint="forward", reason=f"the forward pass fails ({error}), "
                       f"and {rule.describe()}", settings_constraint="forward")
    if channels != rule.channels:
        constraint, reason = "channels", f"the model takes {rule.channels} input channel(s), not {channels}"
    elif min(sizes) < rule.min_size:
        constraint, reason = "min-size", f"the model needs every spatial size at least {rule.min_size}"
    elif rule.multiple > 1 and any(n % rule.multiple for n in sizes):
        constraint, reason = "divisibility", f"the model needs every spatial size to be a multiple of {rule.multiple}"
    elif train and probe.run(shape, False)[0] is not None:
        constraint, reason = "train-batchnorm", "in training a normalisation layer refuses this input"
    else:
        constraint, reason = "forward", "the forward pass fails"
    reason += f" (probed on the meta device: {rule.describe()}; the model says: {error})"
    nearby = _nearest_probed(probe, rule, shape, train) if suggest else None
    return Verdict(model, shape, mode, False, constraint=constraint, reason=reason, suggestion=nearby)


def _nearest_probed(probe: MetaProber, rule, shape, train: bool) -> Shape | None:
    """The candidate that changes the fewest elements (then the least) among: the batch as given or 2,
    the probed channel count, and the sizes rounded up to the probed rule or set to the base size."""
    n_batch, _, *sizes = shape
    batches = {n_batch, 2} if train and n_batch < 2 else {n_batch}
    candidates = {(batch, rule.channels, *chosen) for batch in batches
                  for chosen in ([rule.round_up(n) for n in sizes], [rule.base_size] * len(sizes))}
    for candidate in sorted(candidates, key=lambda c: (sum(a != b for a, b in zip(c, shape)),
                                                       sum(abs(a - b) for a, b in zip(c, shape)), c)):
        if probe.run(candidate, train)[0] is not None:
            return candidate
    return None


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
            _check_domain(candidate, len(shape))
            walk(args, candidate, mode == "train", device, precision)
        except _Refusal:
            continue
        return tuple(candidate)
    return None
