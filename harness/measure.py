"""One spec in, one Measurement out: envelope check, time, peak memory, work count.

Failures are rows: a configuration outside the envelope, out of memory or raising is returned as a
Measurement with ``error`` set, so a sweep records it and goes on.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .counting import WorkCount, count_work
from .envelope import check
from .memory import peak_memory
from .spec import BenchSpec, Measurement
from .workload import prepare, time_step

Timer = Callable[[Callable[[], object], int, int], tuple]  # (step, warmup, rounds) -> raw seconds


class WorkCache:
    """Work counts depend on model, settings and one sample's shape only: count each once per run."""

    def __init__(self):
        self._counts: dict[tuple, WorkCount] = {}

    def get(self, spec: BenchSpec, workload) -> WorkCount:
        key = (spec.model, spec.overrides, spec.input_shape)
        if key not in self._counts:
            self._counts[key] = count_work(workload.model, workload.sample)
        return self._counts[key]


def refusal(spec: BenchSpec) -> str:
    """Empty when the faithful model will run this spec, else the envelope's message."""
    verdict = check(spec.model, spec.full_input_shape, spec.constructor_overrides, spec.mode,
                    spec.device, spec.precision)
    return "" if verdict.supported else f"unsupported: {verdict.message()}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def measure(spec: BenchSpec, timer: Timer = time_step, work_cache: WorkCache | None = None) -> Measurement:
    error = refusal(spec)
    if error:
        return Measurement(spec, error=error)
    workload = None
    try:
        workload = prepare(spec)
        times = timer(workload.step, spec.warmup, spec.rounds)
        output, peak, reserved, memory_kind = peak_memory(workload.step, spec.device)
        work = (work_cache or WorkCache()).get(spec, workload)
        finite = bool(torch.isfinite(output.float()).all())
    except torch.OutOfMemoryError as oom:
        return Measurement(spec, error=f"out of memory: {_first_line(oom)}")
    except (RuntimeError, ValueError) as failure:
        return Measurement(spec, error=_first_line(failure))
    finally:
        del workload
        if spec.device == "cuda":
            torch.cuda.empty_cache()
    return Measurement(spec, tuple(times), peak, reserved, work, tuple(output.shape),
                       extra={"memory_kind": memory_kind, "output_finite": finite})


def find_max_batch(spec: BenchSpec, limit: int = 4096) -> int | None:
    """The largest batch whose step fits in GPU memory (doubling, then bisection). CUDA only: on the
    CPU running out of memory ends the process instead of raising."""
    if spec.device != "cuda":
        raise ValueError("--find-max-batch needs a CUDA device: CPU memory exhaustion kills the process "
                         "rather than raising; drop the option on CPU")

    def fits(batch: int) -> bool:
        trial = BenchSpec(**{**spec.__dict__, "batch": batch, "warmup": 0, "rounds": 1})
        if refusal(trial):
            return False
        try:
            workload = prepare(trial)
            workload.step()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            workload = None
            torch.cuda.empty_cache()

    if not fits(1):
        return None
    low, high = 1, 2
    while high <= limit and fits(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
