"""The prediction: a configuration's trace (harness.memory.tracing; a whole-volume pass: harness.memory.volume)
replayed through the caching allocator with the fitted convolution workspaces (harness.memory.allocator,
harness.memory.workspace) and cuBLAS's workspaces (harness.memory.blas); see the package's docstring. Each
prediction says whether it lies inside what the workspace model was fitted on (``domain``)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from harness.bench.spec import VOLUME_MODE, BenchSpec
from harness.memory.allocator import replay
from harness.memory.blas import workspace_bytes
from harness.memory.events import MB
from harness.memory.tracing import Trace, trace
from harness.memory.volume import volume_trace
from harness.memory.workspace import WORKSPACE_FACTORS, domain, held_before, row_spec


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted ``torch.cuda.max_memory_allocated`` of one measured step, in MiB (as ``peak_mem_mb``)."""

    peak_mb: float  # the prediction: the allocator's peak with the convolution workspaces
    floor_mb: float  # live tensors alone (each rounded to 512 bytes): never above a measured peak
    allocated_mb: float  # the allocator's peak without convolution workspaces (cuBLAS's included)
    parts_mb: dict  # live tensors at the floor's peak, by category (Parameter, Buffer, Optstate, Activation)
    domain: str = ""  # "fitted", "extrapolated: <why>", or "predicted as eager (...); ..." (workspace.domain)
    blas_mb: float = 0.0  # cuBLAS's workspaces held (harness.memory.blas), in allocated_mb and peak_mb


def prediction(events, workspace: dict | None = None, blas: dict | None = None, held: tuple = ()) -> MemoryPrediction:
    """``events`` replayed with the convolution workspace factors (default ``WORKSPACE_FACTORS``), the cuBLAS
    workspace sizes (default ``workspace_bytes()``: torch's defaults on an unknown GPU) and the cuBLAS workspaces
    the process ``held`` before (``harness.memory.allocator.replay``)."""
    done = replay(events, WORKSPACE_FACTORS if workspace is None else workspace,
                  workspace_bytes() if blas is None else blas, held)
    return MemoryPrediction(done.peak / MB, done.floor / MB, done.allocated / MB,
                            {k: v / MB for k, v in done.floor_parts.items()}, blas_mb=done.blas / MB)


def _normal(spec: BenchSpec) -> BenchSpec:
    """What the simulated trace depends on: the configuration as run on CUDA, eager; not how it is measured.
    ``cudnn_benchmark`` is set to its default (False) only so that both settings share one cached trace: the
    fake-tensor step runs no cuDNN, so the trace is the same either way (``prepare`` would otherwise set the
    process's ``torch.backends.cudnn.benchmark`` to True as a side effect). Where it matters, the workspace
    model, it is not hidden: the domain label names a setting the factors were not fitted with."""
    return replace(spec, device="cuda", exec_mode="eager", cudnn_benchmark=False, warmup=1, rounds=1, blocks=1)


@lru_cache(maxsize=256)
def _cached_trace(spec: BenchSpec) -> Trace:
    return volume_trace(spec) if spec.mode == VOLUME_MODE else trace(spec)


def predict_peak_memory(spec: BenchSpec, gpu: str | None = None, cudnn=None, benchmark="spec") -> MemoryPrediction:
    """Peak GPU memory (``max_memory_allocated``) of ``spec``'s measured step (a whole-volume row: one pass over
    the volume), predicted on the CPU (see the package docstring), with its domain label (``gpu``, ``cudnn``: the
    device's name and cuDNN version where known; ``benchmark``: the cudnn.benchmark setting, by default the spec's,
    None where unknown). Raises ValueError for a configuration the envelope refuses."""
    done = prediction(_cached_trace(_normal(spec)).events, blas=workspace_bytes(gpu))
    return replace(done, domain=domain(spec, gpu, cudnn, benchmark))


def _row_blas(row: dict) -> dict:
    """The cuBLAS workspaces on a measured row's GPU under torch's defaults (the rows record no
    CUBLAS_WORKSPACE_CONFIG)."""
    return workspace_bytes(row.get("gpu"), env={})


def predict_row(row: dict, workspace: dict | None = None) -> MemoryPrediction:
    """The prediction for a measured GPU row (harness.memory.workspace: committed or held out), as it was measured:
    on its GPU, with what its process already held (``held_before``)."""
    spec = row_spec(row)
    done = prediction(_cached_trace(_normal(spec)).events, workspace, _row_blas(row), held_before(row))
    return replace(done, domain=domain(spec, row.get("gpu"), row.get("cudnn")))


def register() -> None:
    """Hand ``predict_peak_memory`` to harness.bench's hook, so that CUDA rows carry their prediction."""
    from harness.bench import predictors

    predictors.register_memory_predictor(predict_peak_memory)
