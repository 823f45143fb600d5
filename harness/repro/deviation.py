"""How far apart two results are: bitwise equality, and otherwise the largest deviation, absolute and relative
to the reference's scale (max |a - b| / max |ref|).

Bitwise means the bytes: NaN equals NaN of the same bits, 0.0 and -0.0 differ. A NaN or infinity where the
other side has a number is an infinite deviation.
"""
from __future__ import annotations

import math

import torch


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


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


def relative(abs_deviation: float, ref_scale: float) -> float:
    if abs_deviation == 0:
        return 0.0
    return abs_deviation / ref_scale if ref_scale > 0 and math.isfinite(ref_scale) else math.inf


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
        rel = relative(deviation, scale(a) if per_tensor_scale else overall)
        if deviation > result["max_abs"] or not result["max_abs_tensor"]:
            result.update(max_abs=deviation, max_abs_tensor=name)
        if rel > result["rel"] or not result["rel_tensor"]:
            result.update(rel=rel, rel_tensor=name)
    return result
