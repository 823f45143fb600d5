"""How far apart two results are: bitwise equality, and otherwise the largest deviation, absolute and relative
to the reference's scale (max |a - b| / max |ref|); and whether a result holds values no rounding explains.

Bitwise means the bytes: NaN equals NaN of the same bits, 0.0 and -0.0 differ. A NaN or infinity where the
other side has a number is an infinite deviation.

Denominators: a relative error divides by the reference's largest magnitude, and in a dict of tensors by at least
``SCALE_FLOOR`` of the largest magnitude of all its tensors, so that a tensor that is (nearly) zero in the
reference cannot turn a rounding difference into an enormous relative error. A value more than ``ABSURD`` times
the reference's largest magnitude, or a non-finite one, is reported as such (``anomaly``): no change of
precision, kernel or thread count explains it; uninitialized memory or an overflow does.
"""
from __future__ import annotations

import math

import torch


_WORDS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers of its element size (fewer, wider words than bytes: faster to compare)."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(_WORDS.get(flat.element_size(), torch.uint8))


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(_bytes(a), _bytes(b))


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    diff = (a.detach().double().cpu() - b.detach().double().cpu()).abs()
    value = float(diff.max())
    return value if math.isfinite(value) and not torch.isnan(diff).any() else math.inf


def scale(t: torch.Tensor) -> float:
    return float(t.detach().double().abs().max()) if t.numel() else 0.0


SCALE_FLOOR = 1e-6  # in a dict, a tensor's scale counts as at least this fraction of the dict's largest magnitude
ABSURD = 1e3  # a value this many times the reference's largest magnitude is no rounding error


def relative(abs_deviation: float, ref_scale: float, floor: float = 0.0) -> float:
    """abs_deviation / max(ref_scale, floor); infinite when that is 0 or not finite (and the deviation is not 0)."""
    if abs_deviation == 0:
        return 0.0
    denominator = max(ref_scale, floor) if math.isfinite(ref_scale) else ref_scale
    return abs_deviation / denominator if denominator > 0 and math.isfinite(denominator) else math.inf


def compare_tensor(ref: torch.Tensor, other: torch.Tensor) -> dict:
    """{equal, max_abs, rel}: rel = max |a - b| / max |ref|."""
    if bitwise_equal(ref, other):
        return {"equal": True, "max_abs": 0.0, "rel": 0.0}
    deviation = max_abs(ref, other)
    return {"equal": False, "max_abs": deviation, "rel": relative(deviation, scale(ref))}


def compare_state(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor], per_tensor_scale: bool = True) -> dict:
    """Two name -> tensor dicts (weights, gradients). ``equal``: every tensor bitwise equal (same names).
    ``max_abs`` and the tensor where it is largest; ``rel``: relative to each tensor's own scale
    (``per_tensor_scale``, weights) or to the largest magnitude of all the reference tensors (gradients, where
    a tensor whose gradient is zero in exact arithmetic, e.g. a convolution's bias before BatchNorm, holds
    rounding noise only), and the tensor where it is largest; ``differing``: how many tensors differ."""
    names = sorted(set(ref) | set(other))
    result = {"equal": True, "max_abs": 0.0, "max_abs_tensor": "", "rel": 0.0, "rel_tensor": "", "differing": 0,
              "tensors": len(names)}
    overall = max((scale(t) for t in ref.values() if t.is_floating_point()), default=0.0)
    for name in names:
        if name not in ref or name not in other:
            result.update(equal=False, max_abs=math.inf, max_abs_tensor=name, rel=math.inf, rel_tensor=name)
            result["differing"] += 1
            continue
        a, b = ref[name], other[name]
        if bitwise_equal(a, b):
            continue
        result["equal"] = False
        result["differing"] += 1
        deviation = max_abs(a, b)
        rel = relative(deviation, scale(a) if per_tensor_scale else overall, SCALE_FLOOR * overall)
        if deviation > result["max_abs"] or not result["max_abs_tensor"]:
            result.update(max_abs=deviation, max_abs_tensor=name)
        if rel > result["rel"] or not result["rel_tensor"]:
            result.update(rel=rel, rel_tensor=name)
    return result


def anomaly(ref: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> str:
    """Empty when every value of ``other`` is finite and at most ABSURD times the reference's largest magnitude;
    otherwise what is wrong and where: non-finite values, or an absurd magnitude (and how absurd)."""
    floating = {name: t for name, t in other.items() if t.is_floating_point() and t.numel()}
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in floating.items()}
    bad = {name: count for name, count in bad.items() if count}
    if bad:
        worst = max(bad, key=bad.get)
        return (f"non-finite: {sum(bad.values())} NaN or infinite value(s) in {len(bad)} tensor(s), most in "
                f"{worst} ({bad[worst]})")
    reference = max((scale(t) for t in ref.values() if t.is_floating_point()), default=0.0)
    if not floating or not reference > 0:
        return ""
    largest = max(floating, key=lambda name: scale(floating[name]))
    value = scale(floating[largest])
    if value <= ABSURD * reference:
        return ""
    return (f"absurd: max |value| {value:.3g} in {largest}, {value / reference:.3g} times the reference's largest "
            f"({reference:.3g}); no rounding explains it (uninitialized memory or an overflow in a kernel?)")
