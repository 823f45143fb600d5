"""Peak memory of one step, measured in a pass of its own (never inside timed rounds).

- CUDA: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after
  ``reset_peak_memory_stats``: the whole peak, model, gradients, optimizer state and input included.
- CPU: the rise of the process's resident-set high-water mark (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident set just before the step, after returning freed heap
  to the OS (``malloc_trim``). It counts what the step newly touches (activations, gradients,
  workspaces), not the model and input that were resident already. Not comparable with CUDA numbers.
"""
from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from typing import Callable

import torch

MB = 1024 * 1024
CPU_MEMORY_KIND = "cpu_rss_rise"
CUDA_MEMORY_KIND = "cuda_allocated"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _release_free_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_memory(step: Callable[[], object], device: str):
    """Call ``step`` once; return (its result, peak_mem_mb, peak_reserved_mb, kind)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = step()
        torch.cuda.synchronize()
        return (result, torch.cuda.max_memory_allocated() / MB, torch.cuda.max_memory_reserved() / MB,
                CUDA_MEMORY_KIND)
    try:
        _release_free_heap()
        baseline_kb = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:  # not Linux, or /proc not writable: say so rather than guess
        return step(), None, None, "unavailable"
    result = step()
    return result, (_status_kb("VmHWM") - baseline_kb) * 1024 / MB, None, CPU_MEMORY_KIND


def release_device_caches(device: str) -> None:
    """After a configuration on CUDA: give back what it leaves cached, so that the next configuration's peak counts
    its own memory only. cuBLAS's workspaces first: torch keeps one per thread that ran a matmul, from the caching
    allocator, for the life of the process (``max_memory_allocated`` counts them; torch's own memory-leak checks
    clear them for that reason), so a later configuration would carry an earlier one's; then the allocator's
    cached free segments (``empty_cache``)."""
    if device != "cuda":
        return
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
    torch.cuda.empty_cache()
