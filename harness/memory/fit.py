"""Refitting the workspace factors (``WORKSPACE_FACTORS``, harness.memory.workspace) to measured GPU rows.
suites/test_memory_model.py recomputes them from the committed rows and holds them equal to the constants in use."""
from __future__ import annotations

from harness.memory.allocator import BlasWorkspaces, CachingAllocator, replay
from harness.memory.events import ALLOC, BLAS, FREE, MARK, MB, WORKSPACE
from harness.memory.predict import _cached_trace, _normal, _row_blas, predict_row
from harness.memory.workspace import committed_rows, held_before, row_spec


def fit_workspace_factors(rows: list[dict] | None = None, step: float = 0.05, top: float = 4.0) -> tuple[dict, list]:
    """Refit ``WORKSPACE_FACTORS`` to measured rows (default: the committed ones): the pair on a ``step`` grid
    up to ``top`` whose worst |predicted / measured - 1| is least, to 0.1%; among those, the one whose mean
    squared log(predicted / measured) is least. Each workspace is evaluated on top of what the allocator
    holds at its convolution (the exact replay follows for the result). Returns the factors and each row's
    (spec, measured MiB, predicted MiB)."""
    import numpy as np

    rows = committed_rows() if rows is None else rows
    cases = []
    for row in rows:
        events = _cached_trace(_normal(row_spec(row))).events
        blas, held = _row_blas(row), held_before(row)
        base = replay(events, None, blas, held)
        # Each workspace adds, at its convolution, on top of what is allocated then: take those points once.
        points = _workspace_points(events, blas, held)
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
    results = [(row_spec(row), float(row["peak_mem_mb"]), predict_row(row, factors).peak_mb) for row in rows]
    return factors, results


def _workspace_points(events, blas: dict | None = None, held: tuple = ()):
    """For the fit: at each workspace event of the measured step, the bytes allocated then, the operand's
    and the filter's bytes (numpy arrays)."""
    import numpy as np

    allocator = CachingAllocator()
    handles = BlasWorkspaces(allocator, blas)
    for thread, kind in held:
        handles.take(thread, kind)
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
        elif event[0] == BLAS:
            handles.at(event)
        elif event[0] == WORKSPACE and i > start:
            at.append(allocator.allocated)
            operand.append(event[1])
            weight.append(event[3])
    return np.array(at, dtype=float), np.array(operand, dtype=float), np.array(weight, dtype=float)
