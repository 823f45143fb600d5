"""Peak GPU memory of the exact timed step, predicted without a GPU (``predict_peak_memory(spec)``).

What is predicted: ``torch.cuda.max_memory_allocated`` over the measured step, as harness.bench.memory
measures it (``peak_mem_mb``): after warm-up, the peak reset, one step; model, input, gradients, optimizer
state and everything else the allocator hands out included, the CUDA context not. Two parts, kept apart
so that each can be checked on its own:

1. **Live tensors, simulated** (``predicted_floor_mb``, and the base of ``predicted_peak_mb``). The step is
   built by the code that times it (``harness.bench.workload.prepare``, eager) under ``FakeTensorMode``
   (fake tensors: shapes, dtypes and storages without data, so a 128³ step costs what a 16³ one costs)
   and run as the measurement runs it: a first step, which creates the gradients and SGD's momentum
   buffers, then the step whose peak counts (``second_step`` derives it from the first: the gradients
   freed by ``zero_grad(set_to_none=True)``, the optimizer state kept; a test holds it equal to a second
   step run). torch's ``MemTracker`` (``torch.distributed._tools.mem_tracker``) follows every tensor
   storage the step allocates and frees (``StepTracker`` records the stream), with two corrections where
   fake kernels differ from real ones (dropout while evaluating returns its input; batch norm's saved
   statistics are float32). The stream is replayed through a model of the CUDA caching allocator
   (``CachingAllocator``, c10/cuda/CUDACachingAllocator.cpp, one stream, no memory pressure):

   - every request is rounded up to a multiple of 512 bytes (``kMinBlockSize``);
   - requests up to 1 MiB come from a small pool of 2 MiB segments, larger ones from a large pool; a
     request no cached free block fits gets a new segment: 20 MiB below 10 MiB, else the request rounded
     up to 2 MiB (``kSmallBuffer``, ``kLargeBuffer``, ``kMinLargeAlloc``, ``kRoundLarge``);
   - best fit among the cached free blocks; a block is split when what is left is at least 512 bytes
     (small pool) or more than 1 MiB (large pool), otherwise it is handed out whole, and counted whole;
     freed blocks merge with free neighbours in their segment; no segment is ever given back;
   - ``allocated`` counts the blocks handed out, as ``max_memory_allocated`` does.

   The floor is the peak of the live storages, each rounded up to 512 bytes: memory the step certainly
   holds at one moment, so never more than a measured peak of the same step.

   The storages are CPU fake tensors, with CUDA's autocast policy: a CPU-only torch cannot run autograd on
   CUDA fake tensors, so ``CudaAutocast`` applies CUDA's autocast lists at the call sites autocast acts on,
   with its cache of float32 weight casts; a test holds it to the real CUDA autocast kernels.

2. **What live tensors do not show, fitted** (``WORKSPACE_FACTORS``): cuDNN's convolution workspaces, which
   cuDNN takes from the caching allocator for the length of one convolution and no tensor tracker sees.
   Each convolution of the trace (forward; in backward, the data and filter gradients together) takes,
   after its outputs and while its inputs live, a transient workspace of ``activation`` x the bytes of its
   largest activation operand (input or output; gradient of the output or input in backward) plus
   ``filter`` x the bytes of its filter. The two factors are fitted (``fit_workspace_factors``) to the
   committed GPU rows (harness/bench/data/memory_h200.csv; per-row ratios in docs/memory.md); refit them
   when GPU rows are added.

3. **cuBLAS's workspaces, from torch's source** (``harness.memory.blas``, nothing fitted): the first matmul a
   thread issues gives its cuBLAS handle a workspace from the caching allocator, held for the life of the
   process (32 MiB on Hopper by default); autograd runs a CUDA backward on a thread of its own, so a training
   step with a matmul in its forward and backward (a classifier's ``Linear`` head) holds two, an inference step
   one, and a matmul with a bias (cuBLASLt) a small one besides.

For the planner (harness.planner), ``ScaledTrace`` (harness.planner.scaled) turns two simulations of a configuration at two
small sizes into the trace at any batch and patch size, and estimates its peak in microseconds. A whole-volume row
(mode ``volume``) is predicted the same way from its simulated sliding-window pass (``harness.memory.volume``).

Left out: torch.compile and CUDA graphs (predicted as the eager step: inductor's fused kernels usually
hold less, CUDA graphs' private pools more); what other processes or earlier configurations leave allocated; the
CUDA context, cached but unused segments and fragmentation (``max_memory_allocated`` leaves them out too).

The room, one job a file (arrows only down: events, blas <- autocast, allocator <- tracing <- volume, workspace <-
predict <- fit): ``events`` (the stream's event kinds), ``blas`` (cuBLAS's workspace sizes), ``autocast`` (CUDA's
autocast policy on CPU tensors), ``tracing`` (the tracker, a guarded subclass of torch's private ``MemTracker``,
known to work on torch 2.11-2.13; the trace and ``second_step``), ``volume`` (a whole-volume pass, simulated),
``allocator`` (the caching-allocator replay), ``workspace`` (the fitted cuDNN workspace model, the committed GPU rows
and the domain they cover), ``predict`` (the prediction, with its domain label), ``fit`` (refitting the workspace
factors to GPU rows).

The room sits above ``harness.bench``, which never imports it: a CUDA row gets its prediction through the hook
``harness.bench.predictors`` holds, which ``register()`` below fills (the pytest plugin and the volume command call
it; so does importing ``harness.memory``).
"""
from __future__ import annotations

from harness.memory.allocator import CachingAllocator, Replay, replay, round_size
from harness.memory.blas import workspace_bytes
from harness.memory.autocast import CudaAutocast
from harness.memory.fit import fit_workspace_factors
from harness.memory.predict import MemoryPrediction, predict_peak_memory, predict_row, prediction, register
from harness.memory.tracing import StepTracker, Trace, second_step, trace
from harness.memory.volume import volume_trace
from harness.memory.workspace import WORKSPACE_FACTORS, domain, fitted_domain, load_gpu_rows, row_spec

register()

__all__ = ["CachingAllocator", "CudaAutocast", "MemoryPrediction", "Replay", "StepTracker", "Trace",
           "WORKSPACE_FACTORS", "domain", "fit_workspace_factors", "fitted_domain", "load_gpu_rows",
           "predict_peak_memory", "predict_row", "prediction", "register", "replay", "round_size", "row_spec", "second_step",
           "trace", "volume_trace", "workspace_bytes"]
