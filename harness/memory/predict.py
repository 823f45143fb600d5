"""The prediction: a configuration's trace (harness.memory.tracing) replayed through the caching allocator with
the fitted convolution workspaces (harness.memory.allocator, harness.memory.workspace); see the package's
docstring. Each prediction says whether it lies inside what the workspace model was fitted on (``domain``)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from harness.bench.spec import BenchSpec
from harness.memory.allocator import replay
from harness.memory.events import MB
from harness.memory.tracing import Trace, trace
from harness.memory.workspace import WORKSPACE_FACTORS, domain


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted ``torch.cuda.max_memory_allocated`` of one measured step, in MiB (as ``peak_mem_mb``)."""

    peak_mb: float  # the prediction: the allocator's peak with the convolution workspaces
    floor_mb: float  # live tensors alone (each rounded to 512 bytes): never above a measured peak
    allocated_mb: float  # the allocator's peak without workspaces
    parts_mb: dict  # live tensors at the floor's peak, by category (Parameter, Buffer, Optstate, Activation)
    domain: str = ""  # "fitted", "extrapolated: <why>", or "predicted as eager (...); ..." (workspace.domain)


def prediction(events, workspace: dict | None = None) -> MemoryPrediction:
    done = replay(events, WORKSPACE_FACTORS if workspace is None else workspace)
    return MemoryPrediction(done.peak / MB, done.floor / MB, done.allocated / MB,
                            {k: v / MB for k, v in done.floor_parts.items()})


def _normal(spec: BenchSpec) -> BenchSpec:
    """What the simulated trace depends on: the configuration as run on CUDA, eager; not how it is measured.
    ``cudnn_benchmark`` is set to its default (False) only so that both settings share one cached trace: the
    fake-tensor step runs no cuDNN, so the trace is the same either way (``prepare`` would otherwise set the
    process's ``torch.backends.cudnn.benchmark`` to True as a side effect). Where it matters, the workspace
    model, it is not hidden: the domain label names a setting the factors were not fitted with."""
    return replace(spec, device="cuda", exec_mode="eager", cudnn_benchmark=False, warmup=1, rounds=1, blocks=1)


@lru_cache(maxsize=256)
def _cached_trace(spec: BenchSpec) -> Trace:
    return trace(spec)


def predict_peak_memory(spec: BenchSpec, gpu: str | None = None, cudnn=None, benchmark="spec") -> MemoryPrediction:
    """Peak GPU memory (``max_memory_allocated``) of ``spec``'s measured step, predicted on the CPU (see the
    package docstring), with its domain label (``gpu``, ``cudnn``: the device's name and cuDNN version where
    known; ``benchmark``: the cudnn.benchmark setting, by default the spec's, None where unknown).
    Raises ValueError for a configuration the envelope refuses."""
    return replace(prediction(_cached_trace(_normal(spec)).events), domain=domain(spec, gpu, cudnn, benchmark))


def register() -> None:
    """Hand ``predict_peak_memory`` to harness.bench's hook, so that CUDA rows carry their prediction."""
    from harness.bench import predictors

    predictors.register_memory_predictor(predict_peak_memory)
