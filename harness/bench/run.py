"""One spec in, one Measurement out: envelope check, warm-up, latency, throughput, peak memory, work.

Failures are rows: a configuration outside the envelope, out of memory or raising is returned as a
Measurement with ``error`` set, so a sweep records it and goes on.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from harness.bench.counting import WorkCount, count_work
from harness.bench.configuration import Configuration, resolve
from harness.bench.spec import VOLUME_MODE, BenchSpec, Measurement
from harness.bench.memory import peak_memory
from harness.bench.peak import PeakCache
from harness.bench.timing import block_steps, time_blocks, time_step, warm_up
from harness.bench.volume import measure_volume
from harness.bench.workload import prepare

NOT_FINITE = "output not finite: the step's output holds NaN or inf"

Timer = Callable[[Callable[[], object], int, int], tuple]  # (step, warmup, rounds) -> raw seconds


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_) -> int:
    """Backward of a convolution: the input gradient and the weight gradient each cost what the forward
    pass costs. torch's own formula (2.13) ignores ``groups`` there and counts a depthwise convolution's
    backward as if it were dense (64x too much for 64 groups); the forward formula is right, so use it."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def step_flops(config: Configuration) -> int:
    """FLOPs of one timed step (FlopCounterMode: forward, plus loss and backward in training; the SGD
    update is elementwise and FlopCounterMode counts none of it), on the meta device: exact and free."""
    workload = prepare(config, device="meta")
    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}) as counter:
        workload.run()
    return counter.get_total_flops()


class WorkCache:
    """Work depends on model, settings and shapes only: count each once per run. fvcore MACs per
    (model, overrides, sample shape); step FLOPs per (the same, batch, mode), with the reason when they
    could not be counted."""

    def __init__(self):
        self._counts: dict[tuple, WorkCount] = {}
        self._flops: dict[tuple, tuple[int | None, str]] = {}
        self.peaks = PeakCache()

    def get(self, spec: BenchSpec, workload) -> WorkCount:
        key = (spec.model, spec.overrides, spec.input_shape)
        if key not in self._counts:
            self._counts[key] = count_work(workload.model, workload.sample)
        return self._counts[key]

    def flops(self, config: Configuration) -> tuple[int | None, str]:
        """(FLOPs of one timed step, "") or (None, why they could not be counted)."""
        spec = config.spec
        key = (spec.model, spec.overrides, spec.input_shape, spec.batch, spec.mode)
        if key not in self._flops:
            try:
                self._flops[key] = step_flops(config), ""
            except (RuntimeError, NotImplementedError) as failure:  # e.g. shortcut A builds CPU tensors: no meta run
                self._flops[key] = None, f"not counted on the meta device: {_first_line(failure)}"
        return self._flops[key]


def refusal(spec: BenchSpec) -> str:
    """Empty when the faithful model will run this spec, else the envelope's message."""
    return resolve(spec).refusal


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def measure(spec: BenchSpec, timer: Timer = time_step, work_cache: WorkCache | None = None) -> Measurement:
    """``timer`` takes the latency samples (the pytest plugin passes pytest-benchmark's pedantic mode).
    The configuration is resolved here, once (variant and verdict), and handed on. A whole volume (mode
    ``volume``) is measured by ``harness.bench.volume``."""
    if spec.mode == VOLUME_MODE:
        return measure_volume(spec, timer, work_cache or WorkCache())
    config = resolve(spec)
    row = partial(Measurement, spec, config.variant.source, expected_output_shape=config.verdict.output_shape)
    if config.refusal:
        return row(error=config.refusal)
    cache = work_cache or WorkCache()
    workload = None
    try:
        workload = prepare(config)
        warm = warm_up(workload.step, spec.warmup, spec.device)
        latency = timer(workload.step, 0, spec.rounds)
        steps = block_steps(min(latency))
        blocks = time_blocks(workload.run, steps, spec.blocks, spec.device)
        output, peak, reserved, memory_kind = peak_memory(workload.step, spec.device)
        work = cache.get(spec, workload)
        flop, flop_error = cache.flops(config)
        peak_tflops = cache.peaks.get(spec.device, spec.precision)
        finite = bool(torch.isfinite(output.float()).all())
    except torch.OutOfMemoryError as oom:
        return row(error=f"out of memory: {_first_line(oom)}")
    except (RuntimeError, ValueError) as failure:
        return row(error=_first_line(failure))
    finally:
        del workload
        if spec.device == "cuda":
            torch.cuda.empty_cache()
    # A non-finite output is not a measurement (NaN can take other kernels, and no table should hold it):
    # the row keeps its numbers for inspection, but as an error row.
    predicted = _predicted_memory(spec)
    return row(latency_s=tuple(latency), block_s=tuple(blocks), block_steps=steps, setup_s=warm.setup_s,
                  warmup_steps=warm.steps, step_flop=flop, peak_tflops=peak_tflops, peak_mem_mb=peak,
                  peak_reserved_mb=reserved, work=work, output_shape=tuple(output.shape),
                  error="" if finite else NOT_FINITE,
                       warmup_settled=warm.settled, flop_error=flop_error, extra={"memory_kind": memory_kind, **predicted})


def _predicted_memory(spec: BenchSpec) -> dict:
    """CUDA rows: the memory model's prediction of the row's peak_mem_mb and its live-tensor floor
    (harness.bench.memory_model, simulated on the CPU). Empty on other devices, and where the step cannot be
    simulated (then ``predicted_error`` says why): a prediction that fails never fails the measurement."""
    if spec.device != "cuda":
        return {}
    try:
        from harness.bench.memory_model import predict_peak_memory

        done = predict_peak_memory(spec)
    except Exception as failure:  # whatever a user model's step does on fake tensors: the row stands
        return {"predicted_error": _first_line(failure)}
    return {"predicted_peak_mb": done.peak_mb, "predicted_floor_mb": done.floor_mb}


def find_max_batch(spec: BenchSpec, limit: int = 4096) -> int | None:
    """The largest batch up to ``limit`` whose step fits in GPU memory (doubling, then bisection); ``limit``
    itself when it fits (no batch above it is ever tried), None when not even batch 1 fits. CUDA only: on
    the CPU running out of memory ends the process instead of raising."""
    if spec.device != "cuda":
        raise ValueError("--find-max-batch needs a CUDA device: CPU memory exhaustion kills the process "
                         "rather than raising; drop the option on CPU")
    if limit < 1:
        raise ValueError(f"find_max_batch: limit must be at least 1, not {limit}")

    def fits(batch: int) -> bool:
        trial = resolve(replace(spec, batch=batch, warmup=0, rounds=1))
        if trial.refusal:
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
    low, high = 1, 2  # low fits; high failed, or is past the limit
    while high <= limit and fits(high):
        low, high = high, high * 2
    high = min(high, limit + 1)  # bisect within [low, limit]: limit + 1 stands for "not tried, not allowed"
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low
