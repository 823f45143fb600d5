"""A ready-to-time step for a spec: the model on its device, inputs, and one synchronizing call.

The step synchronizes CUDA before it returns, so a host timer around it measures the GPU work (CUDA
runs asynchronously; without the synchronize a timer measures only the kernel launches).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from .environment import SEED
from .probe import build
from .registry import get_variant
from .spec import BenchSpec

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Workload:
    spec: BenchSpec
    model: torch.nn.Module
    step: Callable[[], torch.Tensor]  # one inference or training step, synchronized
    sample: torch.Tensor  # one sample (batch 1), for counting


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(spec: BenchSpec):
    if spec.precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=spec.device, dtype=AUTOCAST_DTYPES[spec.precision])


def prepare(spec: BenchSpec) -> Workload:
    """Build everything the timed step needs; nothing here is timed."""
    if spec.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
        torch.backends.cudnn.benchmark = spec.cudnn_benchmark
    variant = get_variant(spec.model)
    model = build(spec.model, spec.constructor_overrides, spec.device, seed=SEED)
    generator = torch.Generator(device=spec.device).manual_seed(SEED)
    x = torch.randn(spec.full_input_shape, device=spec.device, generator=generator)
    sample = x[:1].clone()
    if spec.channels_last:
        memory_format = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        model = model.to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
    runnable = torch.compile(model) if spec.compile else model
    device = spec.device

    if spec.mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), _autocast(spec):
                out = runnable(x)
            synchronize(device)
            return out
    else:
        model.train()
        num_classes = variant.constructor_args(**spec.constructor_overrides)["num_classes"]
        target_shape = (spec.batch,) if variant.family == "resnet3d" else (spec.batch, *spec.input_shape[1:])
        target = torch.randint(0, num_classes, target_shape, device=device, generator=generator)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        criterion = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with _autocast(spec):
                out = runnable(x)
                loss = criterion(out.float(), target)
            loss.backward()
            optimizer.step()
            synchronize(device)
            return out.detach()

    return Workload(spec, model, step, sample)


def time_step(step: Callable[[], object], warmup: int, rounds: int) -> tuple[float, ...]:
    """Raw seconds per call after ``warmup`` untimed calls (the same loop pytest-benchmark's pedantic
    mode runs: a perf_counter around each synchronizing call)."""
    import time

    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return tuple(times)
