"""``python -m harness plan --rows``: the predictor held against every measured GPU row in the repository, the
rows the workspace factors are fitted to (harness/bench/data/*.csv) and the rows kept apart to check them
(harness/memory/data/heldout_h200.csv), each with its bound: every row within 10%, the 64³-and-larger rows within 5%
(issue 27's check), no live-tensor floor above its row. suites/test_memory_model.py holds the same bounds."""
from __future__ import annotations

from dataclasses import dataclass

BOUND = 0.10  # every row
LARGE_BOUND = 0.05  # rows of at least LARGE_VOXELS per sample
LARGE_VOXELS = 64 ** 3


@dataclass(frozen=True)
class RowCheck:
    kept: str  # "fitted to" or "held out"
    model: str
    input_shape: str
    batch: int
    mode: str
    dtype: str
    measured_mb: float
    predicted_mb: float
    floor_mb: float
    blas_mb: float

    @property
    def ratio(self) -> float:
        return self.predicted_mb / self.measured_mb

    @property
    def bound(self) -> float:
        sizes = [int(n) for n in self.input_shape.split("x")[1:]]
        voxels = 1
        for n in sizes:
            voxels *= n
        return LARGE_BOUND if voxels >= LARGE_VOXELS else BOUND

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1) <= self.bound and self.floor_mb <= self.measured_mb


def check_rows(workspace: dict | None = None) -> list[RowCheck]:
    """Every measured GPU row, predicted as it was measured (``harness.memory.predict_row``; ``workspace``: the
    convolution workspace factors, default the model's)."""
    from harness.memory.predict import predict_row
    from harness.memory.workspace import committed_rows, heldout_rows

    checks = []
    for kept, rows in (("fitted to", committed_rows()), ("held out", heldout_rows())):
        for row in rows:
            done = predict_row(row, workspace)
            checks.append(RowCheck(kept, row["model"], row["input_shape"], int(row["batch"]), row["mode"], row["dtype"],
                                   float(row["peak_mem_mb"]), done.peak_mb, done.floor_mb, done.blas_mb))
    return checks


def render_checks(checks: list[RowCheck]) -> str:
    lines = ["| rows | model | input | batch | mode | dtype | measured MiB | predicted MiB | predicted / measured | "
             "bound | floor MiB | cuBLAS MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        mark = "" if c.within else " **outside**"
        lines.append(f"| {c.kept} | {c.model} | {c.input_shape} | {c.batch} | {c.mode} | {c.dtype} | {c.measured_mb:.1f} | "
                     f"{c.predicted_mb:.1f} | {c.ratio:.3f}{mark} | ±{c.bound:.0%} | {c.floor_mb:.1f} | {c.blas_mb:.1f} |")
    outside = sum(not c.within for c in checks)
    lines += ["", f"{len(checks) - outside} of {len(checks)} rows within their bound (every row ±{BOUND:.0%}, rows of "
              f"{round(LARGE_VOXELS ** (1 / 3))}³ voxels or more ±{LARGE_BOUND:.0%}; no floor above its row)."]
    return "\n".join(lines)
