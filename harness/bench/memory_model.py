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

For the planner (harness.evidence.plan), ``ScaledTrace`` turns two simulations of a configuration at two
small sizes into the trace at any batch and patch size, and estimates its peak in microseconds.

Left out: torch.compile and CUDA graphs (predicted as the eager step: inductor's fused kernels usually
hold less, CUDA graphs' private pools more); cuBLAS workspaces (these networks' steps call no matmul);
what other processes or earlier configurations leave allocated; the CUDA context, cached but unused
segments and fragmentation (``max_memory_reserved`` and the card's total; the planner keeps a margin).
"""
from __future__ import annotations

import bisect
import contextlib
import csv
import math
import warnings
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import torch
from torch._guards import active_fake_mode
from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType, _UpdateType
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from harness.bench.configuration import resolve
from harness.bench.spec import BenchSpec
from harness.bench.workload import prepare

MB = 1024 * 1024
H200_ROWS = Path(__file__).resolve().parent / "data" / "memory_h200.csv"


# --- CUDA's autocast policy, on CPU tensors ----------------------------------------------------------------
# torch's documented CUDA autocast lists (docs: "Automatic Mixed Precision package", CUDA Op-Specific
# Behavior), by the name of the Python function or Tensor method called. suites/test_memory_model.py holds
# the operators the networks reach, and each family's whole forward pass, to the real CUDA autocast kernels.
LOWER_PRECISION = frozenset({
    "__matmul__", "__rmatmul__", "addbmm", "addmm", "addmv", "addr", "baddbmm", "bmm", "chain_matmul",
    "multi_dot", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "linear", "matmul", "mm", "mv", "prelu", "einsum", "scaled_dot_product_attention",
})
FP32 = frozenset({
    "__pow__", "__rdiv__", "__rpow__", "__rtruediv__", "acos", "asin", "binary_cross_entropy_with_logits",
    "cosh", "cosine_embedding_loss", "cdist", "cosine_similarity", "dist", "erfinv", "exp",
    "expm1", "group_norm", "hinge_embedding_loss", "kl_div", "l1_loss", "layer_norm", "log", "log10",
    "log1p", "log2", "margin_ranking_loss", "mse_loss", "multilabel_margin_loss", "multi_margin_loss",
    "nll_loss", "norm", "normalize", "pdist", "poisson_nll_loss", "pow", "reciprocal", "rsqrt", "sinh",
    "smooth_l1_loss", "soft_margin_loss", "softplus", "renorm", "tan", "triplet_margin_loss", "huber_loss",
    "logsumexp",
})
# (cross_entropy, listed in the docs, is left out: the CUDA kernels leave a half-precision input to it
# as it is; the harness's step hands it out.float() anyway.)
# Run in float32 by a dtype argument rather than by casting the input (no float32 copy of it is made).
FP32_BY_DTYPE = frozenset({"softmax", "log_softmax", "softmin", "cumprod", "cumsum", "prod", "sum"})
PROMOTE = frozenset({"addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "grid_sample", "index_put",
                     "scatter_add", "tensordot", "cat", "stack", "index_copy"})
_CASTABLE = (torch.float16, torch.bfloat16, torch.float32)


class CudaAutocast(TorchFunctionMode):
    """``torch.autocast("cuda", dtype)`` as it treats each call, applied to tensors of any device.

    Casts happen above autograd, where autocast's do, so the graph records them as autocast's; casts of
    float32 leaf tensors that require grad (the weights) are cached until the region ends, except under
    ``inference_mode``, where autocast caches nothing (as torch does)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __exit__(self, *exc):
        self._cache.clear()
        return super().__exit__(*exc)

    def _cast(self, t, dtype: torch.dtype):
        if not isinstance(t, torch.Tensor) or t.dtype not in _CASTABLE or t.dtype == dtype:
            return t
        cacheable = (dtype == self.dtype and t.dtype == torch.float32 and t.requires_grad and t.is_leaf
                     and not t._is_view() and not torch.is_inference_mode_enabled())
        if not cacheable:
            return t.to(dtype)
        hit = self._cache.get(id(t))
        if hit is None or hit[0] is not t:
            hit = self._cache[id(t)] = (t, t.to(dtype))
        return hit[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in LOWER_PRECISION:
            target = self.dtype
        elif name in FP32:
            target = torch.float32
        elif name in FP32_BY_DTYPE:
            first = next((a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)), None)
            if first is not None and first.dtype in (torch.float16, torch.bfloat16) and kwargs.get("dtype") is None:
                kwargs = {**kwargs, "dtype": torch.float32}
            return func(*args, **kwargs)
        elif name in PROMOTE:
            flat = [a for a in tree_flatten((args, kwargs))[0]
                    if isinstance(a, torch.Tensor) and a.dtype in _CASTABLE]
            if not flat:
                return func(*args, **kwargs)
            target = flat[0].dtype
            for a in flat[1:]:
                target = torch.promote_types(target, a.dtype)
        else:
            return func(*args, **kwargs)
        flat, tree = tree_flatten((args, kwargs))
        # Last argument first, in the order autocast's C++ wrappers evaluate their arguments' casts.
        cast = [self._cast(a, target) for a in reversed(flat)][::-1]
        args, kwargs = tree_unflatten(cast, tree)
        return func(*args, **kwargs)


# --- the tracker: torch's MemTracker, recording the stream of allocations ------------------------------------
ALLOC, FREE, RETYPE, WORKSPACE, MARK = "alloc", "free", "retype", "workspace", "mark"
# Convolutions as the tracker sees them: ``convolution`` under autograd, the functional name under
# ``inference_mode`` (where composite operators reach the tracker undecomposed), and the backward.
_CONVOLUTIONS = frozenset({"convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                           "conv_transpose2d", "conv_transpose3d"})
_CONVOLUTION_BACKWARD = "convolution_backward"
# Dropout as the tracker sees it under ``inference_mode``: (input, p, train). Evaluating, or with p = 0, the
# real kernels return the input itself.
_DROPOUTS = frozenset({"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"})


def _returns_input(args, kwargs) -> bool:
    kwargs = kwargs or {}
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    train = args[2] if len(args) > 2 else kwargs.get("train", True)
    return not train or p == 0


# Batch norm in training, as the tracker sees it: (output, saved mean, saved inverse deviation, ...).
_BATCH_NORMS = frozenset({"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
                          "cudnn_batch_norm"})


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
        return result


# --- the CUDA caching allocator, replayed ------------------------------------------------------------------
MIN_BLOCK = 512  # kMinBlockSize: every request is rounded up to a multiple of this
SMALL_SIZE = 1 << 20  # kSmallSize: requests up to this come from the small pool
SMALL_BUFFER = 2 << 20  # kSmallBuffer: small-pool segments
LARGE_BUFFER = 20 << 20  # kLargeBuffer: the segment for large requests under MIN_LARGE_ALLOC
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge: larger segments are their request rounded up to this


def round_size(nbytes: int) -> int:
    return MIN_BLOCK if nbytes < MIN_BLOCK else MIN_BLOCK * -(-nbytes // MIN_BLOCK)


class CachingAllocator:
    """The block bookkeeping of c10's CUDACachingAllocator for one stream and no memory pressure (see the
    module docstring); ``allocated`` and ``peak`` are what ``max_memory_allocated`` reports."""

    def __init__(self):
        self.pools: dict[bool, list[tuple[int, int]]] = {True: [], False: []}  # small? -> sorted (size, addr)
        self.size: dict[int, int] = {}  # block address -> block size
        self.free: dict[int, bool] = {}
        self.small: dict[int, bool] = {}
        self.ends: dict[int, int] = {}  # block end -> block address (to find the previous block)
        self.next_segment = 0
        self.allocated = self.peak = self.reserved = 0

    def _segment(self, size: int, small: bool) -> int:
        if small:
            length = SMALL_BUFFER
        elif size < MIN_LARGE_ALLOC:
            length = LARGE_BUFFER
        else:
            length = ROUND_LARGE * -(-size // ROUND_LARGE)
        addr = self.next_segment
        self.next_segment += length + ROUND_LARGE  # segments never touch: blocks merge within one only
        self.reserved += length
        self._add(addr, length, small, free=False)
        return addr

    def _add(self, addr: int, size: int, small: bool, free: bool) -> None:
        self.size[addr], self.small[addr], self.free[addr] = size, small, free
        self.ends[addr + size] = addr
        if free:
            bisect.insort(self.pools[small], (size, addr))

    def _remove(self, addr: int) -> None:
        size = self.size.pop(addr)
        del self.ends[addr + size]
        if self.free.pop(addr):
            pool = self.pools[self.small.pop(addr)]
            del pool[bisect.bisect_left(pool, (size, addr))]
        else:
            del self.small[addr]

    def malloc(self, nbytes: int) -> int:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (size, -1))
        if i < len(pool):
            block_size, addr = pool[i]
            self._remove(addr)
        else:
            addr = self._segment(size, small)
            block_size = self.size[addr]
            self._remove(addr)
        remaining = block_size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:
            self._add(addr + size, remaining, small, free=True)
        else:
            size = block_size
        self._add(addr, size, small, free=False)
        self.allocated += size
        self.peak = max(self.peak, self.allocated)
        return addr

    def release(self, addr: int) -> None:
        size, small = self.size[addr], self.small[addr]
        self.allocated -= size
        self._remove(addr)
        following = addr + size
        if self.free.get(following) and self.small[following] == small:
            size += self.size[following]
            self._remove(following)
        previous = self.ends.get(addr)
        if previous is not None and self.free.get(previous) and self.small[previous] == small:
            size += self.size[previous]
            self._remove(previous)
            addr = previous
        self._add(addr, size, small, free=True)


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


# Size fields of each event kind (index in the event tuple) that scale with the configuration.
_SIZE_FIELDS = {ALLOC: (2,), WORKSPACE: (1, 3)}


@dataclass(frozen=True)
class ScaledTrace:
    """The trace of a step at any batch and spatial size, from two traces of it at sizes that differ in batch
    by a factor ``fb`` and in volume by a factor ``fv`` (not 1, ``fb`` or ``1/fb``): every recorded size is
    one tensor's, so it is constant, per sample, per voxel, or per sample and voxel, and its exact ratio
    between the two traces says which. Exact where every such tensor keeps its class, as in networks whose
    stages divide the input evenly (the planner's patch steps); ``suites/test_memory_model.py`` holds it
    equal to a direct trace."""

    base: Trace
    classes: tuple  # per event: ((field, batch exponent, volume exponent), ...)

    @classmethod
    def fit(cls, first: Trace, second: Trace) -> "ScaledTrace":
        a, b = first.events, second.events
        if len(a) != len(b):
            raise ValueError(f"the two traces differ in length ({len(a)} and {len(b)} events)")
        fb = Fraction(second.batch, first.batch)
        fv = Fraction(_spatial_volume(second.spatial), _spatial_volume(first.spatial))
        factors = {(0, 0): Fraction(1), (1, 0): fb, (0, 1): fv, (1, 1): fb * fv}
        if len(set(factors.values())) < 4:
            raise ValueError(f"the two traces' sizes do not tell the classes apart (batch x{fb}, volume x{fv})")
        classes = []
        for x, y in zip(a, b):
            if x[0] != y[0] or (x[0] in (ALLOC, FREE, RETYPE) and x[1] != y[1]):
                raise ValueError("the two traces differ in structure")
            fields = []
            for index in _SIZE_FIELDS.get(x[0], ()):
                if x[index] == y[index]:
                    fields.append((index, 0, 0))
                    continue
                found = [k for k, f in factors.items() if x[index] and Fraction(y[index], x[index]) == f]
                if not found:
                    raise ValueError(f"a size ({x[index]} and {y[index]} bytes) scales with neither batch nor volume")
                fields.append((index, *found[0]))
            classes.append(tuple(fields))
        return cls(first, tuple(classes))

    def estimate(self, batch: int, spatial, workspace: dict | None = None) -> float:
        """The predicted peak in MiB at ``batch`` and ``spatial``, fast (vectorized, for searches): live storages
        rounded to 512 bytes plus the workspace of the convolution at hand, without the allocator's block
        bookkeeping, so at most the exact ``prediction(self.at(...))`` (which adds unsplit remainders)."""
        import numpy as np

        table = self._table()
        fb = batch / self.base.batch
        fv = _spatial_volume(spatial) / _spatial_volume(self.base.spatial)
        factors = {"activation": 0.0, "filter": 0.0, **(WORKSPACE_FACTORS if workspace is None else workspace)}
        sizes = table["base"] * np.where(table["per_sample"], fb, 1.0) * np.where(table["per_voxel"], fv, 1.0)
        rounded = np.where(sizes > 0, np.ceil(sizes / MIN_BLOCK) * MIN_BLOCK, 0.0)
        live = np.cumsum(table["sign"] * rounded[table["slot"]])
        transient = (factors["activation"] * rounded[table["operand"]] * (table["operand"] >= 0)
                     + factors["filter"] * rounded[table["weight"]] * (table["weight"] >= 0))
        transient = np.where(transient > 0, np.ceil(transient / MIN_BLOCK) * MIN_BLOCK, 0.0)
        return float((live + transient)[table["start"]:].max()) / MB

    def _table(self) -> dict:
        """Arrays for ``estimate``: a slot per recorded size (allocations, workspace operands and filters),
        and per event the slot it adds or removes (``sign``) and the workspace slots it takes for a moment."""
        cached = self.__dict__.get("_arrays")
        if cached is not None:
            return cached
        import numpy as np

        base, per_sample, per_voxel = [], [], []
        slot_of_storage: dict[int, int] = {}

        def new_slot(size, i, j):
            base.append(float(size))
            per_sample.append(bool(i))
            per_voxel.append(bool(j))
            return len(base) - 1

        sign, slot, operand, weight = [], [], [], []
        start = 0
        for n, (event, fields) in enumerate(zip(self.base.events, self.classes)):
            classes = {index: (i, j) for index, i, j in fields}
            s, k, o, w = 0.0, 0, -1, -1
            if event[0] == ALLOC:
                k = slot_of_storage[event[1]] = new_slot(event[2], *classes[2])
                s = 1.0
            elif event[0] == FREE and event[1] in slot_of_storage:
                k, s = slot_of_storage.pop(event[1]), -1.0
            elif event[0] == WORKSPACE:
                o, w = new_slot(event[1], *classes[1]), new_slot(event[3], *classes[3])
            elif event[0] == MARK:
                start = n
            sign.append(s)
            slot.append(k)
            operand.append(o)
            weight.append(w)
        if not base:
            new_slot(0, 0, 0)
        arrays = {"base": np.array(base), "per_sample": np.array(per_sample), "per_voxel": np.array(per_voxel),
                  "sign": np.array(sign), "slot": np.array(slot), "operand": np.array(operand),
                  "weight": np.array(weight), "start": start}
        object.__setattr__(self, "_arrays", arrays)
        return arrays

    def at(self, batch: int, spatial) -> tuple:
        fb = batch / self.base.batch
        fv = _spatial_volume(spatial) / _spatial_volume(self.base.spatial)
        events = []
        for event, fields in zip(self.base.events, self.classes):
            if any(i or j for _, i, j in fields):
                event = list(event)
                for index, i, j in fields:
                    event[index] = int(round(event[index] * fb ** i * fv ** j))
                event = tuple(event)
            events.append(event)
        return tuple(events)


# --- the replay --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    floor: int  # peak of the live storages, each rounded up to 512 bytes
    allocated: int  # peak of the allocator's blocks, unsplit remainders included, without workspaces
    peak: int  # the same with the convolution workspaces
    floor_parts: dict  # the live storages at the floor's peak, by MemTracker category (bytes)


def replay(events, workspace: dict | None = None) -> Replay:
    """Replay a trace through ``CachingAllocator``; peaks count from the last ``MARK`` (the start of the
    measured step) on, as ``reset_peak_memory_stats`` before it does. ``workspace``: the workspace model's
    factors (``activation``, ``filter``), or None for none."""
    allocator = CachingAllocator()
    where: dict[int, tuple[int, int, object]] = {}  # storage -> (block address, rounded bytes, category)
    start = max((i for i, e in enumerate(events) if e[0] == MARK), default=-1)
    live = floor = 0
    allocated = 0
    parts: dict = {}
    by_kind: dict = {}
    activation = filter_ = 0.0
    if workspace:
        activation, filter_ = workspace["activation"], workspace["filter"]
    for i, event in enumerate(events):
        kind = event[0]
        if kind == ALLOC:
            _, key, nbytes, category = event
            rounded = round_size(nbytes) if nbytes else 0
            where[key] = (allocator.malloc(nbytes) if nbytes else -1, rounded, category)
            live += rounded
            by_kind[category] = by_kind.get(category, 0) + rounded
            if live > floor:
                floor, parts = live, dict(by_kind)
            allocated = max(allocated, allocator.allocated)
        elif kind == FREE:
            entry = where.pop(event[1], None)
            if entry is not None:
                addr, rounded, category = entry
                if addr >= 0:
                    allocator.release(addr)
                live -= rounded
                by_kind[category] -= rounded
        elif kind == RETYPE:
            entry = where.get(event[1])
            if entry is not None and entry[2] != event[2]:
                addr, rounded, category = entry
                where[event[1]] = (addr, rounded, event[2])
                by_kind[category] -= rounded
                by_kind[event[2]] = by_kind.get(event[2], 0) + rounded
        elif kind == WORKSPACE and (activation or filter_):
            nbytes = int(activation * event[1] + filter_ * event[3])
            if nbytes:
                allocator.release(allocator.malloc(nbytes))
        elif kind == MARK and i == start:
            allocator.peak = allocated = allocator.allocated
            floor, parts = live, dict(by_kind)
    return Replay(floor, allocated, allocator.peak,
                  {getattr(c, "value", str(c)): v for c, v in parts.items() if v})


# --- the model's constants, and the prediction --------------------------------------------------------------
# Fitted (``fit_workspace_factors``: the least worst |predicted / measured - 1| on a 0.05 grid) to the 16
# committed H200 rows in harness/bench/data/memory_h200.csv (unet3d-resnet50 at 1x64^3, batch 1, 2, 4,
# inference and training, fp32 and bf16 autocast; unet3d and unet3d-resnet50 at 1x16^3, batch 2, fp32).
# The activation factor is set by the 64^3 inference rows (a convolution over a large volume), the filter
# factor by the 16^3 inference rows (deep convolutions over a tiny volume); training rows peak where no
# large workspace is taken and hardly move with either. Per-row ratios: docs/memory.md.
WORKSPACE_FACTORS = {"activation": 1.5, "filter": 1.4}


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted ``torch.cuda.max_memory_allocated`` of one measured step, in MiB (as ``peak_mem_mb``)."""

    peak_mb: float  # the prediction: the allocator's peak with the convolution workspaces
    floor_mb: float  # live tensors alone (each rounded to 512 bytes): never above a measured peak
    allocated_mb: float  # the allocator's peak without workspaces
    parts_mb: dict  # live tensors at the floor's peak, by category (Parameter, Buffer, Optstate, Activation)


def prediction(events, workspace: dict | None = None) -> MemoryPrediction:
    done = replay(events, WORKSPACE_FACTORS if workspace is None else workspace)
    return MemoryPrediction(done.peak / MB, done.floor / MB, done.allocated / MB,
                            {k: v / MB for k, v in done.floor_parts.items()})


def _normal(spec: BenchSpec) -> BenchSpec:
    """What the prediction depends on: the configuration (as run on CUDA, eager), not how it is measured."""
    return replace(spec, device="cuda", exec_mode="eager", cudnn_benchmark=True, warmup=1, rounds=1, blocks=1)


@lru_cache(maxsize=256)
def _cached_trace(spec: BenchSpec) -> Trace:
    return trace(spec)


def predict_peak_memory(spec: BenchSpec) -> MemoryPrediction:
    """Peak GPU memory (``max_memory_allocated``) of ``spec``'s measured step, predicted on the CPU (see the
    module docstring). Raises ValueError for a configuration the envelope refuses."""
    return prediction(_cached_trace(_normal(spec)).events)


@lru_cache(maxsize=64)
def scaled_trace(model: str, overrides: str, channels: int, mode: str, precision: str, channels_last: bool,
                 first: tuple, second: tuple) -> ScaledTrace:
    """A ``ScaledTrace`` from traces at ``first`` and ``second`` ((batch, spatial) each)."""
    def at(point):
        batch, spatial = point
        return trace(BenchSpec(model, (channels, *spatial), batch, mode, device="cuda", precision=precision,
                               channels_last=channels_last, overrides=overrides))
    return ScaledTrace.fit(at(first), at(second))


# --- the committed GPU rows, and the fit --------------------------------------------------------------------
def load_gpu_rows(path: Path = H200_ROWS) -> list[dict]:
    """The committed measured rows (see the file's provenance columns)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def row_spec(row: dict) -> BenchSpec:
    return BenchSpec(row["model"], tuple(int(n) for n in row["input_shape"].split("x")), int(row["batch"]),
                     row["mode"], device="cuda", precision=row["dtype"], cudnn_benchmark=row["cudnn_benchmark"] == "True")


def fit_workspace_factors(rows: list[dict] | None = None, step: float = 0.05, top: float = 4.0) -> tuple[dict, list]:
    """Refit ``WORKSPACE_FACTORS`` to measured rows (default: the committed ones): the pair on a ``step`` grid
    up to ``top`` whose worst |predicted / measured - 1| is least, to 0.1%; among those, the one whose mean
    squared log(predicted / measured) is least. Each workspace is evaluated on top of what the allocator
    holds at its convolution (the exact replay follows for the result). Returns the factors and each row's
    (spec, measured MiB, predicted MiB)."""
    import numpy as np

    rows = load_gpu_rows() if rows is None else rows
    cases = []
    for row in rows:
        events = _cached_trace(_normal(row_spec(row))).events
        base = replay(events, None)
        # Each workspace adds, at its convolution, on top of what is allocated then: take those points once.
        points = _workspace_points(events)
        cases.append((float(row["peak_mem_mb"]) * MB, base.allocated, points))
    grid = np.arange(0.0, top + step / 2, step)
    best = None
    for a in grid:
        for w in grid:
            ratios = []
            for measured, allocated, (at, operand, weight) in cases:
                peak = max(allocated, float((at + a * operand + w * weight).max()) if len(at) else 0.0)
                ratios.append(peak / measured)
            ratios = np.array(ratios)
            # The least worst error (to 0.1%); among those, the least mean squared log ratio.
            key = (round(float(np.abs(ratios - 1).max()), 3), float(np.mean(np.log(ratios) ** 2)))
            if best is None or key < best[0]:
                best = (key, {"activation": round(float(a), 4), "filter": round(float(w), 4)})
    factors = best[1]
    results = [(row_spec(row), float(row["peak_mem_mb"]),
                prediction(_cached_trace(_normal(row_spec(row))).events, factors).peak_mb) for row in rows]
    return factors, results


def _workspace_points(events):
    """For the fit: at each workspace event of the measured step, the bytes allocated then, the operand's
    and the filter's bytes (numpy arrays)."""
    import numpy as np

    allocator = CachingAllocator()
    where: dict[int, int] = {}
    start = max(i for i, e in enumerate(events) if e[0] == MARK)
    at, operand, weight = [], [], []
    for i, event in enumerate(events):
        if event[0] == ALLOC:
            where[event[1]] = allocator.malloc(event[2]) if event[2] else -1
        elif event[0] == FREE and event[1] in where:
            addr = where.pop(event[1])
            if addr >= 0:
                allocator.release(addr)
        elif event[0] == WORKSPACE and i > start:
            at.append(allocator.allocated)
            operand.append(event[1])
            weight.append(event[3])
    return np.array(at, dtype=float), np.array(operand, dtype=float), np.array(weight, dtype=float)
