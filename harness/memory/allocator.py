"""The CUDA caching allocator, replayed (c10/cuda/CUDACachingAllocator.cpp, one stream, no memory pressure; the
rules are listed in docs/memory.md), and the replay of a trace through it with the convolution workspaces. No torch."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from harness.memory.events import ALLOC, BLAS, FREE, MARK, RETYPE, WORKSPACE

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


@dataclass(frozen=True)
class Replay:
    floor: int  # peak of the live storages, each rounded up to 512 bytes
    allocated: int  # peak of the allocator's blocks, unsplit remainders included, without convolution workspaces
    peak: int  # the same with the convolution workspaces
    floor_parts: dict  # the live storages at the floor's peak, by MemTracker category (bytes)
    blas: int = 0  # the cuBLAS workspaces held (in allocated and peak, not in the floor: no tensor holds them)


class BlasWorkspaces:
    """The cuBLAS workspaces a trace's matmuls take (``BLAS`` events; sizes from harness.memory.blas): a thread's
    first matmul takes its cuBLAS workspace, its first through cuBLASLt the cuBLASLt one besides; held from then
    on, as torch keeps them for the life of the process."""

    def __init__(self, allocator: CachingAllocator, sizes: dict | None):
        self.allocator, self.sizes = allocator, sizes or {}
        self.taken: dict[tuple, int] = {}  # (thread, "cublas"|"cublaslt") -> bytes

    def at(self, event) -> None:
        _, thread, lt = event
        for kind in ("cublas", "cublaslt") if lt else ("cublas",):
            self.take(thread, kind)

    def take(self, thread: str, kind: str) -> None:
        size = self.sizes.get(kind, 0)
        if size and (thread, kind) not in self.taken:
            self.allocator.malloc(size)
            self.taken[thread, kind] = round_size(size)

    @property
    def held(self) -> int:
        return sum(self.taken.values())


def replay(events, workspace: dict | None = None, blas: dict | None = None, held: tuple = ()) -> Replay:
    """Replay a trace through ``CachingAllocator``; peaks count from the last ``MARK`` (the start of the
    measured step) on, as ``reset_peak_memory_stats`` before it does. ``workspace``: the workspace model's
    factors (``activation``, ``filter``), or None for none; ``blas``: the cuBLAS workspace sizes
    (``harness.memory.blas.workspace_bytes``), or None for none; ``held``: cuBLAS workspaces the process holds
    before the trace begins, ((thread, "cublas"|"cublaslt"), ...) (left by configurations measured before)."""
    allocator = CachingAllocator()
    handles = BlasWorkspaces(allocator, blas)
    for thread, kind in held:
        handles.take(thread, kind)
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
        elif kind == BLAS:
            handles.at(event)
            allocated = max(allocated, allocator.allocated)
        elif kind == MARK and i == start:
            allocator.peak = allocated = allocator.allocated
            floor, parts = live, dict(by_kind)
    return Replay(floor, allocated, allocator.peak,
                  {getattr(c, "value", str(c)): v for c, v in parts.items() if v}, handles.held)
