"""Deterministic facts about each variant: the part of a regression check that needs no timing.

Per variant at a small input: parameters (registered and used), MACs by operator, output shape, and
the histogram of aten operators one forward pass dispatches (meta device: no arithmetic). Any change
to a reference model's work shows up here exactly, with no noise.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.bench.counting import count_work
from harness.catalog.meta_probe import build
from harness.catalog.registry import get_variant, list_models


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
    """One sample at the smallest cubic (square) size from 16 (32 in 2D) that the variant runs in both modes."""
    from harness.bench.profiles import smallest_runnable

    variant = get_variant(name)
    dims = variant.spatial_dims
    return (1, variant.example_input[1]) + (smallest_runnable(name, variant.example_input[1], 16 if dims == 3 else 32,
                                                                2, dims, ""),) * dims


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


def collect(models: str | list[str] = "*") -> dict[str, dict]:
    """Facts of the variants matching a pattern (the article's only) or of the names given."""
    names = list_models(models, sources=("article",)) if isinstance(models, str) else models
    return {name: variant_facts(name) for name in names}


def differences(before: dict, after: dict) -> list[dict]:
    """Every fact that differs, as (model, metric, before, after) rows."""
    rows = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, {}), after.get(name, {})
        for metric in sorted(set(old) | set(new)):
            if old.get(metric) != new.get(metric):
                rows.append({"model": name, "metric": metric, "before": old.get(metric), "after": new.get(metric)})
    return rows
