"""The timing loops, named for what they measure. No other module times a step.

- **Warm-up** (``warm_up``): the first call is timed on its own as ``setup_s`` (it holds torch.compile's
  compilation, CUDA-graph capture, cuDNN autotuning and lazy initialisation); then untimed steps until
  ``warmup`` steps have run and, on CUDA, until the step time settles.
- **Latency** (``time_step``): one step, synchronized after it, per sample: what one request waits.
- **Throughput** (``time_blocks``): blocks of k steps issued back to back with one synchronization per
  block, as a training or inference loop runs; CUDA events around the block on CUDA, perf_counter on CPU.
  k is chosen so a block lasts at least ``MIN_BLOCK_S``, which hides the launch and synchronization
  overhead that a synchronized step pays every time (on an H200 the host needs 21 ms to enqueue one
  unet3d-resnet50 training step, so a synchronized step leaves the GPU idle meanwhile).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

MIN_BLOCK_S = 0.25  # a throughput block lasts at least this long
MAX_BLOCK_STEPS = 1000
SETTLE_WINDOW = 3  # CUDA warm-up ends when this many consecutive steps agree ...
SETTLE_TOLERANCE = 0.05  # ... within this fraction of their median
SETTLE_MAX_STEPS = 50  # ... or after this many steps
SETTLE_MAX_S = 30.0  # ... or this long, whichever comes first


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class WarmUp:
    setup_s: float | None  # the first call, alone; None when there was no warm-up
    steps: int  # warm-up steps run, the first included
    settled: bool  # CUDA: the step time settled before the caps; CPU: True


def warm_up(step: Callable[[], object], warmup: int, device: str) -> WarmUp:
    """Run ``step`` (synchronizing) untimed before measuring; see the module docstring."""
    if warmup <= 0:
        return WarmUp(None, 0, False)
    start = time.perf_counter()
    step()
    setup_s = time.perf_counter() - start
    times, began = [], time.perf_counter()
    for steps in range(2, SETTLE_MAX_STEPS + 1):
        if steps > warmup and (device != "cuda" or _settled(times)):
            return WarmUp(setup_s, steps - 1, True)
        if device == "cuda" and time.perf_counter() - began > SETTLE_MAX_S and steps > warmup:
            break
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return WarmUp(setup_s, 1 + len(times), device != "cuda" or _settled(times))


def _settled(times: list[float]) -> bool:
    if len(times) < SETTLE_WINDOW:
        return False
    window = times[-SETTLE_WINDOW:]
    middle = statistics.median(window)
    return all(abs(t - middle) <= SETTLE_TOLERANCE * middle for t in window)


def time_step(step: Callable[[], object], warmup: int, rounds: int) -> tuple[float, ...]:
    """Latency: raw seconds per synchronizing call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return tuple(times)


def block_steps(step_s: float, min_block_s: float = MIN_BLOCK_S) -> int:
    """Steps per throughput block so that a block lasts at least ``min_block_s``."""
    if not step_s > 0:
        return 1
    return max(1, min(MAX_BLOCK_STEPS, math.ceil(min_block_s / step_s)))


def time_block(run: Callable[[], object], steps: int, device: str) -> float:
    """Seconds for ``steps`` calls of ``run`` issued back to back, synchronized once at the end."""
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    for _ in range(steps):
        run()
    return time.perf_counter() - start_s


def time_blocks(run: Callable[[], object], steps: int, blocks: int, device: str) -> tuple[float, ...]:
    """Throughput: raw seconds of each of ``blocks`` blocks of ``steps`` back-to-back calls."""
    return tuple(time_block(run, steps, device) for _ in range(blocks))
