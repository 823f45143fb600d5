"""The trace of a step: the workload (harness.bench.workload.prepare, eager) run under torch's ``MemTracker``
on fake tensors, recording every storage allocated and freed, and every convolution (for the workspace model);
``second_step`` derives the measured (second) step from the first.

``StepTracker`` subclasses a private torch API (``torch.distributed._tools.mem_tracker.MemTracker``: its
``_WINFO``, ``_update_snap``, ``_track_resize``, ``_restore_resize``, ``_register_global_optimizer_hook``,
``_deregister_param_and_optimizer_hooks``, ``_track_module_params_and_buffers``, ``_track``, ``_in_opt``,
``_fake_mode_on_entry`` and the ``_MemRefType`` and ``_UpdateType`` enums). It is known to work on torch
2.11 to 2.13 (``KNOWN_TORCH``); on another torch ``check_torch`` warns once, and
suites/test_memory_model.py fails loudly when one of those names is gone or has changed its signature.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, replace

import torch
from torch._guards import active_fake_mode
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _UpdateType
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.bench.configuration import resolve
from harness.bench.spec import BenchSpec
from harness.bench.workload import prepare
from harness.memory.autocast import CudaAutocast
from harness.memory.events import ALLOC, BACKWARD_THREAD, BLAS, FORWARD_THREAD, FREE, MARK, RETYPE, WORKSPACE

# The torch releases (major, minor) this subclass of a private API is known to work on.
KNOWN_TORCH = ((2, 11), (2, 13))
# What StepTracker uses of MemTracker (and its module): suites/test_memory_model.py checks every name.
PRIVATE_NAMES = ("_WINFO", "_update_snap", "_track_resize", "_restore_resize", "_register_global_optimizer_hook",
                 "_deregister_param_and_optimizer_hooks", "_track_module_params_and_buffers", "_track")


def torch_release(version: str | None = None) -> tuple[int, int]:
    text = (version or torch.__version__).split("+")[0]
    parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in text.split(".")[:2]]
    return parts[0], parts[1] if len(parts) > 1 else 0


def torch_is_known(version: str | None = None) -> bool:
    return KNOWN_TORCH[0] <= torch_release(version) <= KNOWN_TORCH[1]


_warned = False


def check_torch() -> None:
    """Warn once when torch lies outside ``KNOWN_TORCH``, or fail when the private names are gone."""
    global _warned
    missing = [n for n in PRIVATE_NAMES if not hasattr(MemTracker, n) and n != "_WINFO"]
    if missing:
        raise RuntimeError(f"torch {torch.__version__}: MemTracker lacks {', '.join(missing)}; the memory model "
                           f"subclasses this private API and is known to work on torch "
                           f"{KNOWN_TORCH[0][0]}.{KNOWN_TORCH[0][1]}-{KNOWN_TORCH[1][0]}.{KNOWN_TORCH[1][1]} only")
    if not _warned and not torch_is_known():
        _warned = True
        warnings.warn(f"the memory model subclasses torch's private MemTracker and is known to work on torch "
                      f"{KNOWN_TORCH[0][0]}.{KNOWN_TORCH[0][1]} to {KNOWN_TORCH[1][0]}.{KNOWN_TORCH[1][1]}, not "
                      f"{torch.__version__}: check its predictions (suites/test_memory_model.py)", stacklevel=2)


# Convolutions as the tracker sees them: ``convolution`` under autograd, the functional name under
# ``inference_mode`` (where composite operators reach the tracker undecomposed), and the backward.
_CONVOLUTIONS = frozenset({"convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                           "conv_transpose2d", "conv_transpose3d"})
_CONVOLUTION_BACKWARD = "convolution_backward"
# Dropout as the tracker sees it under ``inference_mode``: (input, p, train). Evaluating, or with p = 0, the
# real kernels return the input itself.
_DROPOUTS = frozenset({"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"})
# Operators that call cuBLAS on CUDA, as the tracker sees them (the composite ones undecomposed under
# ``inference_mode``): the first on a thread takes that thread's cuBLAS workspace (harness.memory.blas).
_MATMULS = frozenset({"mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot",
                      "linear", "bilinear", "matmul", "einsum", "tensordot", "chain_matmul", "multi_dot", "inner"})


def _returns_input(args, kwargs) -> bool:
    kwargs = kwargs or {}
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    train = args[2] if len(args) > 2 else kwargs.get("train", True)
    return not train or p == 0


# Batch norm in training, as the tracker sees it: (output, saved mean, saved inverse deviation, ...).
_BATCH_NORMS = frozenset({"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
                          "cudnn_batch_norm"})


def _through_cublaslt(name: str, args, kwargs) -> bool:
    """A matmul with a one-dimensional bias (``addmm``'s ``self``, ``linear``'s ``bias``): torch sends it through
    cuBLASLt (its bias epilogue); a plain ``mm`` (``beta`` 0) goes through cuBLAS."""
    if name in ("addmm", "_addmm_activation"):
        return isinstance(args[0], torch.Tensor) and args[0].dim() == 1
    if name == "linear":
        bias = args[2] if len(args) > 2 else (kwargs or {}).get("bias")
        return isinstance(bias, torch.Tensor)
    return False


def _thread() -> str:
    """The thread a CUDA operator would run on: autograd runs a CUDA backward on a thread of its own."""
    return BACKWARD_THREAD if torch._C._current_graph_task_id() != -1 else FORWARD_THREAD


def _nbytes(t) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


class StepTracker(MemTracker):
    """torch's ``MemTracker`` with its storage accounting as it is (a weak reference per storage, freed
    storages reported by their finalizers, ``resize_`` followed, optimizer state told apart by the
    optimizer hooks), recording the stream of allocations and frees in order, with every convolution
    (for the workspace model). Its module-wise bookkeeping (``ModTracker``'s forward and backward hooks on
    every module, snapshots per module) is left off: the replay needs the device-wide stream only, and
    those hooks cost twice the simulation itself."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple] = []
        self.closed = False

    def __enter__(self) -> "StepTracker":
        self._fake_mode_on_entry = active_fake_mode()
        self._register_global_optimizer_hook()
        self._track_resize()
        TorchDispatchMode.__enter__(self)
        return self

    def __exit__(self, *args) -> None:
        self.closed = True
        self._deregister_param_and_optimizer_hooks()
        self._restore_resize()
        TorchDispatchMode.__exit__(self, *args)

    def _update_snap(self, u_type, winfo, old_mem_consumed=None, old_reftype=None) -> None:
        super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)
        if self.closed:  # storages freed after the tracked steps (the workload torn down) are not the step's
            return
        key = id(winfo)
        if u_type == _UpdateType.ADD:
            self.events.append((ALLOC, key, winfo.mem_consumed, winfo.reftype))
        elif u_type == _UpdateType.DEL:
            self.events.append((FREE, key))
        elif u_type == _UpdateType.SIZE:
            self.events.append((FREE, key))
            self.events.append((ALLOC, key, winfo.mem_consumed, winfo.reftype))
        elif u_type == _UpdateType.REF:
            self.events.append((RETYPE, key, winfo.reftype))

    def track_module(self, module: torch.nn.Module) -> None:
        """Label a module's parameters and buffers as such (they are counted from their allocation on)."""
        self._track_module_params_and_buffers(module, install_grad_hooks=False)

    def mark(self) -> None:
        self.events.append((MARK,))

    def _float32_statistics(self, result) -> None:
        """Batch norm's saved mean and inverse deviation are float32 in the real kernels (CUDA's always, the
        CPU's with float32 weights, as under autocast), but the input's dtype in the decomposition fake
        tensors follow on the CPU: record fake half-precision ones at their real size."""
        for t in result[1:3]:
            if isinstance(t, FakeTensor) and t.dtype in (torch.float16, torch.bfloat16) and self.events:
                winfo, _ = self._WINFO.get(t.untyped_storage(), (None, None))
                key = id(winfo)
                for i in range(len(self.events) - 1, -1, -1):
                    event = self.events[i]
                    if event[0] == ALLOC and event[1] == key:
                        self.events[i] = (ALLOC, key, t.numel() * 4, event[3])
                        break

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _DROPOUTS and _returns_input(args, kwargs):
            return args[0]  # as the real kernels do; the fake one copies
        result = func(*args, **(kwargs or {}))
        reftype = _MemRefType.OPT if self._in_opt else _MemRefType.ACT
        for t in (result,) if isinstance(result, torch.Tensor) else tree_flatten(result)[0]:
            if isinstance(t, torch.Tensor):
                self._track(reftype, t)
        if name in _BATCH_NORMS:
            self._float32_statistics(result)
        if name in _CONVOLUTIONS:  # (input, weight, bias, ...) -> output
            self.events.append((WORKSPACE, max(_nbytes(args[0]), _nbytes(result)), "forward", _nbytes(args[1])))
        elif name == _CONVOLUTION_BACKWARD:  # (grad_output, input, weight, ...) -> (grad_input, grad_weight, grad_bias)
            self.events.append((WORKSPACE, max(_nbytes(args[0]), _nbytes(args[1])), "backward", _nbytes(args[2])))
        elif name in _MATMULS:
            self.events.append((BLAS, _thread(), _through_cublaslt(name, args, kwargs)))
        return result



# --- a step's trace: the measured step, canonical, at any size ---------------------------------------------
@dataclass(frozen=True)
class Trace:
    """The allocation stream of a configuration (storages numbered in allocation order): the workload's
    set-up, ``MARK``, the first step, ``MARK``, the measured (second) step. ``batch`` and ``spatial``: the
    configuration's."""

    events: tuple
    batch: int
    spatial: tuple[int, ...]


def _canonical(events: list[tuple]) -> tuple:
    numbers: dict[int, int] = {}  # the tracker's key (reused once freed) -> allocation number
    out = []
    count = 0
    for event in events:
        kind = event[0]
        if kind == ALLOC:
            numbers[event[1]] = count
            count += 1
            out.append((ALLOC, numbers[event[1]], event[2], event[3]))
        elif kind == FREE:
            if event[1] in numbers:
                out.append((FREE, numbers.pop(event[1])))
        elif kind == RETYPE:
            if event[1] in numbers:
                out.append((RETYPE, numbers[event[1]], event[2]))
        else:
            out.append(event)
    return tuple(out)


def _alive(events) -> dict[int, object]:
    alive: dict[int, object] = {}
    for event in events:
        if event[0] == ALLOC:
            alive[event[1]] = event[3]
        elif event[0] == FREE:
            alive.pop(event[1], None)
        elif event[0] == RETYPE and event[1] in alive:
            alive[event[1]] = event[2]
    return alive


def second_step(events: tuple) -> tuple:
    """The measured step, derived from the first: what the first step leaves behind besides the optimizer's
    state (the gradients) is freed first, as ``zero_grad(set_to_none=True)`` frees it, then the first step's
    allocations and frees happen again, less the optimizer state it created (SGD's momentum buffers, which
    the second step updates in place). suites/test_memory_model.py holds this equal to a second step run."""
    start = max(i for i, e in enumerate(events) if e[0] == MARK)
    before, after = _alive(events[:start]), _alive(events)
    created = {e[1] for e in events[start:] if e[0] == ALLOC}
    state = {n for n in created if n in after and after[n] == _MemRefType.OPT}
    leftovers = [n for n in after if n in created and n not in state]
    offset = 1 + max((e[1] for e in events if e[0] == ALLOC), default=0)
    step = [(FREE, n) for n in leftovers]
    for event in events[start + 1:]:
        if event[0] in (ALLOC, FREE, RETYPE):
            if event[1] in state:
                continue
            event = (event[0], event[1] + offset, *event[2:])
        step.append(event)
    assert not set(before) & set(leftovers)
    return events + ((MARK,),) + tuple(step)


def _spatial_volume(spatial) -> int:
    return math.prod(spatial)


def trace(spec: BenchSpec, target: str = "cuda", fake: bool = True, steps: int = 1) -> Trace:
    """Run ``spec``'s exact workload (``prepare``; eager) under the tracker: set-up, then ``steps`` steps
    (1: the second step derived from the first, ``second_step``; 2: both run). On CPU fake tensors by
    default (``fake=False``: real CPU tensors, for the exactness proof). ``target="cuda"``: autocast with
    CUDA's policy (``CudaAutocast``); ``"cpu"``: torch's CPU autocast, as a CPU row runs."""
    check_torch()
    config = resolve(replace(spec, exec_mode="eager"))
    if config.refusal:
        raise ValueError(config.refusal)
    autocast = CudaAutocast if target == "cuda" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FakeTensorMode() if fake else contextlib.nullcontext(), StepTracker() as tracker:
            workload = prepare(config, "cpu", autocast=autocast)
            tracker.track_module(workload.model)
            for _ in range(steps):
                tracker.mark()
                workload.run()
    del workload  # after the tracker has closed: tearing the workload down is no part of the step
    events = _canonical(tracker.events)
    return Trace(events if steps > 1 else second_step(events), spec.batch, tuple(spec.input_shape[1:]))
