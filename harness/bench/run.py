"""One spec in, one Measurement out: envelope check, warm-up, latency, throughput, peak memory, work.

Failures are rows: a configuration outside the envelope, out of memory, raising anything at all (its type
and first line), returning an output of another shape than the envelope predicts, or a non-finite one, is
returned as a Measurement with ``error`` set, so a sweep records it and goes on; only KeyboardInterrupt and
SystemExit (not ``Exception``s) propagate. No configuration is ever lost for want of a row.

A loader-fed training row (``spec.loader``, harness.bench.loader) is measured by the same steps, each taking its batch
from the loader; its throughput blocks also record the seconds spent waiting for data (``Measurement.wait_s``).
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from harness.bench.counting import WorkCount, count_work
from harness.bench.configuration import Configuration, resolve
from harness.bench.loader import time_fed_blocks, warm_up_fed
from harness.bench.spec import NO_LOADER, VOLUME_MODE, BenchSpec, Measurement, output_problem, sample_problem
from harness.bench.memory import peak_memory, release_device_caches
from harness.bench.predictors import predicted_columns
from harness.bench.peak import PeakCache
from harness.bench.timing import block_steps, time_blocks, time_step, warm_up
from harness.bench.volume import measure_volume
from harness.bench.workload import prepare

NOT_FINITE = "output not finite: the step's output holds NaN or inf"
MiB = 1024 * 1024

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
            except Exception as failure:  # e.g. shortcut A builds CPU tensors: no meta run; counting never fails a row
                self._flops[key] = None, f"not counted on the meta device: {_first_line(failure)}"
        return self._flops[key]


def refusal(spec: BenchSpec) -> str:
    """Empty when the faithful model will run this spec, else the envelope's message."""
    return resolve(spec).refusal


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def measure(spec: BenchSpec, timer: Timer = time_step, work_cache: WorkCache | None = None,
            find_max: bool = False) -> Measurement:
    """``timer`` takes the latency samples (the pytest plugin passes pytest-benchmark's pedantic mode).
    The configuration is resolved here, once (variant and verdict), and handed on. A whole volume (mode
    ``volume``) is measured by ``harness.bench.volume``. ``find_max``: also the largest batch that fits (CUDA,
    ``with_max_batch``), inside the same error-row path."""
    if spec.mode == VOLUME_MODE:
        return measure_volume(spec, timer, work_cache or WorkCache())
    try:
        config = resolve(spec)
    except Exception as failure:  # a user model whose probe or builder raises: an error row all the same
        return Measurement(spec, error=_first_line(failure))
    row = partial(Measurement, spec, config.variant.source, expected_output_shape=config.verdict.output_shape)
    if config.refusal:
        return row(error=config.refusal)
    cache = work_cache or WorkCache()
    workload = None
    try:
        workload = prepare(config)
        feed = getattr(workload, "feed", None)  # loader-fed: the warm-up drains the first batches, blocks count waits
        warm = warm_up(workload.step, spec.warmup, spec.device) if feed is None else warm_up_fed(workload.step, spec)
        latency = timer(workload.step, 0, spec.rounds)
        steps = block_steps(min(latency))
        if feed is None:
            blocks, waits = time_blocks(workload.run, steps, spec.blocks, spec.device), ()
        else:
            blocks, waits = time_fed_blocks(workload.run, feed, steps, spec.blocks, spec.device)
        output, peak, reserved, memory_kind = peak_memory(workload.step, spec.device)
        work = cache.get(spec, workload)
        flop, flop_error = cache.flops(config)
        peak_tflops = cache.peaks.get(spec.device, spec.precision)
        output_shape = tuple(output.shape)
        finite = bool(torch.isfinite(output.float()).all())
    except torch.OutOfMemoryError as oom:
        return row(error=f"out of memory: {_first_line(oom)}")
    except Exception as failure:  # any failure of the step is the row's error; KeyboardInterrupt/SystemExit pass
        return row(error=_first_line(failure))
    finally:
        if getattr(workload, "feed", None) is not None:
            workload.feed.close()  # its workers stop now, not when the row's objects happen to be collected
        del workload
        release_device_caches(spec.device)  # cuBLAS's workspaces too: the next row's peak is its own
    # A wrong output shape or a non-finite output is not a measurement (NaN can take other kernels, and no table
    # should hold it): the row keeps its numbers for inspection, but as an error row, decided before it is written.
    per_voxel = config.variant.record.target == "segmentation"
    error = (output_problem(output_shape, config.verdict.output_shape, spec.full_input_shape, per_voxel)
             or sample_problem(latency, blocks)
             or ("" if finite else NOT_FINITE))
    # Predicted as the tensor-fed step: the loader's batch takes the place of the batch made once.
    predicted = predicted_columns(replace(spec, loader=NO_LOADER, workers=0))
    m = row(latency_s=tuple(latency), block_s=tuple(blocks), block_steps=steps, setup_s=warm.setup_s,
            warmup_steps=warm.steps, step_flop=flop, peak_tflops=peak_tflops, peak_mem_mb=peak,
            peak_reserved_mb=reserved, work=work, output_shape=output_shape, error=error,
            warmup_settled=warm.settled, flop_error=flop_error, extra={"memory_kind": memory_kind, **predicted},
            wait_s=tuple(waits))
    # The largest batch is the step's own: searched on the tensor-fed row, not again with a loader.
    return with_max_batch(m) if find_max and not m.error and spec.loader == NO_LOADER else m


def with_max_batch(m: Measurement, search=None, predict=None) -> Measurement:
    """``m`` with the largest batch that fits (``find_max_batch``, measured) and beside it the memory model's
    (``predict_max_batch``). A failure of the search keeps the row and its numbers, with the failure as its
    error (a failed measurement: ``--resume`` measures it again); a failure of the prediction leaves
    ``predicted_max_batch`` empty and never fails the row."""
    search = search or find_max_batch
    predict = predict or predict_max_batch
    try:
        found = search(m.spec)
    except Exception as failure:
        return replace(m, error=f"find_max_batch failed: {_first_line(failure)}")
    finally:
        if m.spec.device == "cuda":
            torch.cuda.empty_cache()
    try:
        predicted = predict(m.spec)
    except Exception as failure:
        return replace(m, max_batch=found, extra={**m.extra, "predicted_max_batch_error": _first_line(failure)})
    return replace(m, max_batch=found, predicted_max_batch=predicted)


# A step is judged in its steady state: SGD's momentum buffers exist only from the end of the first training
# step, so the first step alone needs less memory than every later one.
STEADY_STEPS = 2


def find_max_batch(spec: BenchSpec, limit: int = 4096) -> int | None:
    """The largest batch up to ``limit`` whose steady-state step fits in GPU memory (each tried batch runs
    ``STEADY_STEPS`` steps, optimizer state included; from the smallest batch the envelope accepts, steps of 1,
    2, 4, ..., then bisection); ``limit`` itself when it fits (no batch above it is ever tried), None when not
    even that smallest batch fits. Out of memory means "does not fit";
    any other error propagates (``with_max_batch`` makes it the row's error). CUDA only: on the CPU running
    out of memory ends the process instead of raising."""
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
            for _ in range(STEADY_STEPS):
                workload.step()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            workload = None
            torch.cuda.empty_cache()

    first = smallest_batch(spec)
    return largest(fits, limit, start=first, first=first)


def smallest_batch(spec: BenchSpec, most: int = 16) -> int:
    """The smallest batch from 1 up that the envelope accepts (training a network whose deepest BatchNorm sees
    one value per channel needs 2); 1 when none up to ``most`` is (the search then finds nothing)."""
    return next((b for b in range(1, most + 1) if not resolve(replace(spec, batch=b)).refusal), 1)


def largest(fits: Callable[[int], bool], limit: int, start: int = 1, first: int = 1) -> int | None:
    """The largest n in [first, limit] with ``fits(n)``, for a ``fits`` that holds from ``first`` up to some n
    and fails above it; None when ``fits(first)`` fails. Tries ``start`` first (a guess), then steps away from
    it by 1, 2, 4, ... until the answer is bracketed, then bisects: logarithmic in the distance from the guess;
    nothing outside [first, limit] is tried."""
    if first > limit:
        return None
    start = max(first, min(start, limit))
    step = 1
    if fits(start):
        low = start  # the answer lies at or above start
        while True:
            candidate = start + step
            if candidate > limit:
                high = limit + 1  # "not tried, not allowed"
                break
            if not fits(candidate):
                high = candidate
                break
            low, step = candidate, step * 2
    else:
        high = start  # the answer lies below start
        while True:
            if high == first:
                return None
            candidate = max(first, start - step)
            if fits(candidate):
                low = candidate
                break
            high, step = candidate, step * 2
    while high - low > 1:  # low fits, high does not (or lies past the limit)
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def device_memory_mb(device: str) -> float:
    """The device's total memory (``torch.cuda.get_device_properties``), in MiB as peak_mem_mb."""
    if device != "cuda":
        raise ValueError(f"the predicted largest batch is for CUDA rows, not {device}")
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / MiB


def predict_max_batch(spec: BenchSpec, total_mb: float | None = None, limit: int = 4096,
                      peak_mb: Callable[[BenchSpec], float] | None = None) -> int | None:
    """The largest batch up to ``limit`` whose step the memory model (``harness.memory.predict_peak_memory``,
    through ``harness.bench.predictors``: the steady-state step, optimizer state included) predicts to fit in ``total_mb``
    (default: the device's total memory, no margin: the measured search's counterpart); None when not even the
    smallest batch the envelope accepts does. A batch the envelope refuses does not fit. The first guess
    extrapolates the smallest two batches linearly
    (activations grow with the batch, the model's weights and state do not), so a search takes a few traces."""
    if peak_mb is None:
        from harness.bench.predictors import memory_predictor

        peak_mb = lambda s: memory_predictor()(s).peak_mb  # noqa: E731
    total = device_memory_mb(spec.device) if total_mb is None else total_mb
    known: dict[int, float] = {}

    def predicted(batch: int) -> float:
        if batch not in known:
            trial = replace(spec, batch=batch)
            known[batch] = math.inf if resolve(trial).refusal else peak_mb(trial)
        return known[batch]

    fits = lambda batch: predicted(batch) <= total  # noqa: E731
    first = smallest_batch(spec)
    if first > limit or not fits(first):
        return None
    guess = first
    if limit > first and math.isfinite(predicted(first + 1)) and predicted(first + 1) > predicted(first):
        guess = int((total - predicted(first)) / (predicted(first + 1) - predicted(first))) + first
    return largest(fits, limit, start=guess, first=first)
