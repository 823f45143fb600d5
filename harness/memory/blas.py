"""cuBLAS's workspaces: memory a step holds that no tensor shows and nothing here fits.

torch gives every cuBLAS handle a workspace from the CUDA caching allocator the first time the handle is used on a
stream, and keeps it for the life of the process (aten/src/ATen/cuda/CublasHandlePool.cpp: ``getNewWorkspace``,
``cublas_handle_stream_to_workspace``), so ``max_memory_allocated`` counts it. Handles are per thread, and autograd
runs a CUDA backward on its own thread, one per device: a training step whose forward and backward both call
cuBLAS (a ``Linear`` layer, e.g. the ResNet classifier's head) holds two workspaces, an inference step one.
A matmul with a bias (``addmm``, ``linear``) goes through cuBLASLt, whose thread also keeps a workspace of its own
(``getCUDABlasLtWorkspace``). The sizes are torch's defaults, which environment variables change:

- cuBLAS: ``CUBLAS_WORKSPACE_CONFIG`` (``:SIZE:COUNT`` pairs, SIZE in KiB), else 4096 KiB x 8 = 32 MiB on compute
  capability 9.0 (Hopper: H100, H200, H800, H20, GH200) and 4096 KiB x 2 + 16 KiB x 8 elsewhere;
- cuBLASLt: ``CUBLASLT_WORKSPACE_SIZE`` (KiB), else 1024 KiB, at most the cuBLAS workspace; none of its own where
  ``TORCH_CUBLASLT_UNIFIED_WORKSPACE=1`` makes it share the cuBLAS one.

An unknown GPU (the planner given a budget, not a card) gets Hopper's sizes: the GPU the committed rows were measured
on, and the larger of the two defaults. No torch here: the tracker (harness.memory.tracing) records each matmul and
the thread it runs on (``BLAS`` events); the replay (harness.memory.allocator) takes the workspaces at their first.
"""
from __future__ import annotations

import os
import re

# Compute capability 9.0, the one torch gives the larger default (its ``sm90`` check); matched as whole words.
HOPPER = re.compile(r"\b(GH200|H100|H200|H800|H20)\b", re.IGNORECASE)
KIB = 1024
HOPPER_DEFAULT = 4096 * KIB * 8
OTHER_DEFAULT = 4096 * KIB * 2 + 16 * KIB * 8
LT_DEFAULT = 1024 * KIB


def _cublas_bytes(config: str | None, default: int) -> int:
    """torch's ``parseChosenWorkspaceSize``: the sum of SIZE KiB x COUNT over ``:SIZE:COUNT`` pairs; unparsable or
    unset, the default."""
    pairs = re.findall(r":([0-9]+):([0-9]+)", config or "")
    return sum(int(size) * KIB * int(count) for size, count in pairs) if pairs else default


def workspace_bytes(gpu: str | None = None, env=None) -> dict:
    """``{"cublas": bytes, "cublaslt": bytes}``: the workspace a thread's cuBLAS handle takes, and the one its
    cuBLASLt calls take besides, on ``gpu`` (a device name; None: unknown) under ``env`` (default: os.environ)."""
    env = os.environ if env is None else env
    hopper = gpu is None or bool(HOPPER.search(str(gpu)))
    cublas = _cublas_bytes(env.get("CUBLAS_WORKSPACE_CONFIG"), HOPPER_DEFAULT if hopper else OTHER_DEFAULT)
    lt_text = str(env.get("CUBLASLT_WORKSPACE_SIZE", "")).strip()
    lt = int(lt_text) * KIB if lt_text.isdigit() else LT_DEFAULT
    if str(env.get("TORCH_CUBLASLT_UNIFIED_WORKSPACE", "")).strip().lower() in ("1", "true", "yes", "on"):
        lt = 0
    return {"cublas": cublas, "cublaslt": min(lt, cublas)}
