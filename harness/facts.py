"""Deterministic facts about each variant: the part of a regression check that needs no timing.

Per variant at a small input: parameters (registered and used), MACs by operator, output shape, and
the histogram of aten operators one forward pass dispatches (meta device: no arithmetic). Any change
to a reference model's work shows up here exactly, with no noise.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .counting import count_work
from .probe import build
from .registry import get_variant, list_models


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def op_histogram(name: str, shape) -> dict[str, int]:
    model = build(name, device="meta").eval()
    with torch.no_grad(), _OpCounter() as counter:
        model(torch.empty(shape, device="meta"))
    return dict(sorted(counter.calls.items()))


def fact_shape(name: str) -> tuple[int, ...]:
    """The smallest of 16 and 32 per side (3D; 2D: 32) the variant accepts (EfficientNet-B0 needs 32)."""
    from .envelope import check
    variant = get_variant(name)
    sizes = (16, 32) if variant.spatial_dims == 3 else (32,)
    shapes = [(1, variant.example_input[1]) + (size,) * variant.spatial_dims for size in sizes]
    return next((shape for shape in shapes if check(name, shape, suggest=False).supported), shapes[-1])


def variant_facts(name: str) -> dict:
    shape = fact_shape(name)
    model = build(name)
    sample = torch.randn(shape)
    work = count_work(model, sample)
    with torch.no_grad():
        output = model.eval()(sample)
    return {
        "input_shape": list(shape), "output_shape": list(output.shape),
        "params_total": work.params_total, "params_used": work.params_used, "macs": work.macs,
        "macs_by_operator": work.macs_by_operator, "unsupported_ops": work.unsupported_ops,
        "op_calls": op_histogram(name, shape),
    }


def collect(models: str = "*") -> dict[str, dict]:
    return {name: variant_facts(name) for name in list_models(models)}


def differences(before: dict, after: dict) -> list[dict]:
    """Every fact that differs, as (model, metric, before, after) rows."""
    rows = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, {}), after.get(name, {})
        for metric in sorted(set(old) | set(new)):
            if old.get(metric) != new.get(metric):
                rows.append({"model": name, "metric": metric, "before": old.get(metric), "after": new.get(metric)})
    return rows
