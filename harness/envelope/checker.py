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
from typing import Any, Mapping

import torch

from harness.catalog.registry import Shape, Variant, get_variant
from harness.envelope.probed import check_probed
from harness.envelope.verdict import ARGUMENT_HINTS, FIXES, MODES, Refusal, Verdict
from harness.envelope.walkers import WALKERS, check_domain
from harness.overrides import format_value, freeze_value

def check(model: str | Variant, input_shape, overrides: Mapping[str, Any] | None = None, mode: str = "inference",
          device: str = "cpu", precision: str = "fp32", suggest: bool = True) -> Verdict:
    """Will ``model`` (with constructor ``overrides``) run ``input_shape`` in ``mode``?"""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    variant = model if isinstance(model, Variant) else get_variant(model)  # a resolved variant: no look-up
    model = variant.name
    overrides = dict(overrides or {})
    args = variant.constructor_args(**overrides)
    shape = tuple(int(n) for n in input_shape)
    missing = variant.unavailable_reason()
    if missing:
        return Verdict(model, shape, mode, False, constraint="unavailable", reason=f"{model} {missing.split(':')[0]}",
                       settings_constraint="unavailable", way_out=missing.split(": ", 1)[-1])
    built = _build_problem(variant, overrides)  # refused before anything runs when the class cannot be built
    if built is not None:
        return Verdict(model, shape, mode, False, constraint="constructor", reason=built.reason,
                       settings_constraint="constructor", way_out=built.way_out)
    if variant.record.envelope is None:
        return check_probed(variant, overrides, shape, mode, suggest)
    walk = WALKERS[variant.record.envelope]
    try:
        check_domain(shape, 2 + variant.spatial_dims)
        stages, output = walk(args, shape, mode == "train", device, precision)
    except Refusal as refusal:
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




def _builds(variant, overrides: Mapping[str, Any]) -> BaseException | None:
    """The exception the class raises when built with these overrides (on meta), or None."""
    key = (variant.name, freeze_value(overrides))
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


def _build_problem(variant: Variant, overrides: Mapping[str, Any]) -> Refusal | None:
    """A constructor refusal naming the culprit argument(s) and what to set them to, or None."""
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
    return Refusal("constructor", reason, way_out)


def _settings_problem(walk, args, variant, mode, device, precision) -> Refusal | None:
    """The refusal that blocks every input with these settings, or None when some input runs.

    A batch of 2 with the model's channel count and sizes of 64 passes every input constraint
    (channels, min-size, parity, train-batchnorm), so whatever still breaks is the settings' fault.
    """
    argument = variant.record.channels_argument
    channels = args.get(argument, 1) if argument else 1
    try:
        walk(args, (2, channels, *[64] * variant.spatial_dims), mode == "train", device, precision)
    except Refusal as refusal:
        if variant.family == "unet3d-resnet" and refusal.way_out == "set base_c to 1 or more":
            refusal.way_out = FIXES["decoder-channels"]  # the encoder's decoder fits base_c=64 only
        return refusal
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
            check_domain(candidate, len(shape))
            walk(args, candidate, mode == "train", device, precision)
        except Refusal:
            continue
        return tuple(candidate)
    return None

