"""What ``regress`` times: small configurations, each a BenchSpec (the one configuration identity)."""
from __future__ import annotations

from harness.bench.spec import BenchSpec
from harness.catalog.registry import get_variant
from harness.evidence.facts import fact_shape


def quick_specs(names: list[str], device: str, modes=("inference", "train")) -> list[BenchSpec]:
    """Every chosen variant at its fact shape (3D) or 64² (2D): inference at batch 1, a training step at batch 2."""
    specs = []
    for name in names:
        variant = get_variant(name)
        size = fact_shape(name)[2:] if variant.spatial_dims == 3 else (64,) * 2
        for mode, batch in (("inference", 1), ("train", 2)):
            if mode in modes:
                specs.append(BenchSpec(name, (variant.example_input[1], *size), batch, mode, device,
                                       cudnn_benchmark=device == "cuda"))
    return specs
