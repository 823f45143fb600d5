"""The machine's dense matmul peak, *measured* (never a datasheet number), per device and precision.

Utilization (``mfu``) is a model's achieved FLOP/s over this. A square matmul grows until one call takes
``MIN_CALL_S``, then calls are repeated for ``MIN_TOTAL_S`` and the best rate counts (noise only slows
a call down). fp32 uses whatever the run allows: on CUDA with ``torch.backends.cuda.matmul.allow_tf32``
on, that is the TF32 peak, and the environment records the flag.
"""
from __future__ import annotations

import time

import torch

from harness.bench.memory import release_device_caches

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MIN_CALL_S = 0.02
MIN_TOTAL_S = 0.5
MAX_SIZE = {"cpu": 4096, "cuda": 16384}


def _one_call_s(a: torch.Tensor, b: torch.Tensor, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    torch.mm(a, b)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_peak_tflops(device: str, precision: str) -> float:
    """Best dense matmul rate of this device in this precision, in TFLOP/s."""
    dtype = DTYPES[precision]
    size = 256
    while True:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        _one_call_s(a, b, device)  # first call: library initialisation, kernel choice
        if _one_call_s(a, b, device) >= MIN_CALL_S or size >= MAX_SIZE[device]:
            break
        size *= 2
    best, spent = float("inf"), 0.0
    while spent < MIN_TOTAL_S:
        seconds = _one_call_s(a, b, device)
        best, spent = min(best, seconds), spent + seconds
    del a, b
    # The matmuls took this thread's cuBLAS workspace, which torch keeps allocated: a later row's peak would count it.
    release_device_caches(device)
    return 2 * size ** 3 / best / 1e12


class PeakCache:
    """One measurement per (device, precision) per run."""

    def __init__(self):
        self._peaks: dict[tuple[str, str], float] = {}

    def get(self, device: str, precision: str) -> float:
        if (device, precision) not in self._peaks:
            self._peaks[device, precision] = measure_peak_tflops(device, precision)
        return self._peaks[device, precision]

    def measured(self) -> dict[str, float]:
        return {f"{device}-{precision}": round(tflops, 3) for (device, precision), tflops in self._peaks.items()}
