"""What live tensors do not show, fitted: cuDNN's convolution workspaces (``WORKSPACE_FACTORS``), the committed GPU
rows they were fitted to (harness/bench/data/*.csv), and the domain those rows cover (``fitted_domain``): a
prediction outside it (another GPU, precision, layout, dimensionality, cuDNN or cudnn.benchmark setting) is an
extrapolation of the workspace model and says so (``domain``). Refit with harness.memory.fit."""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from harness.bench.spec import BenchSpec

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
H200_ROWS = DATA / "memory_h200.csv"
# The memory room's own data: rows kept apart to check the model (never fitted to), and what the measuring process
# already held when a committed row was measured (cuBLAS workspaces left by earlier configurations).
HELDOUT_ROWS = Path(__file__).resolve().parent / "data" / "heldout_h200.csv"
HELD_BEFORE = Path(__file__).resolve().parent / "data" / "held_before_h200.csv"
ROW_KEY = ("model", "input_shape", "batch", "mode", "dtype")

# Fitted (``fit_workspace_factors``: the least worst |predicted / measured - 1| on a 0.05 grid) to the 16
# committed H200 rows in harness/bench/data/memory_h200.csv (unet3d-resnet50 at 1x64^3, batch 1, 2, 4,
# inference and training, fp32 and bf16 autocast; unet3d and unet3d-resnet50 at 1x16^3, batch 2, fp32), each as
# it was measured: cuBLAS's workspaces counted (harness.memory.blas), with those its process already held
# (HELD_BEFORE). The activation factor is set by the 64^3 inference rows (a convolution over a large volume: the
# workspace there is 1.45-1.5 x its input at every batch and precision), the filter factor by the 16^3 rows (deep
# convolutions over a tiny volume, about 1.0-1.07 x the filter in both directions). Issue 27: before the cuBLAS
# workspaces were counted the fit gave 1.5 and 1.4, the filter factor pulled up by the unet3d-resnet50 16^3 rows'
# uncounted 65 MiB. Per-row ratios: docs/memory.md (``python -m harness plan --rows``).
WORKSPACE_FACTORS = {"activation": 1.45, "filter": 1.05}


def load_gpu_rows(path: Path = H200_ROWS) -> list[dict]:
    """The committed measured rows (see the file's provenance columns)."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _with_context(rows: list[dict]) -> list[dict]:
    """Each row with ``held_before``: what its measuring process already held (``HELD_BEFORE``; empty: nothing)."""
    context = load_gpu_rows(HELD_BEFORE) if HELD_BEFORE.exists() else []  # (an install without the room's data)
    held = {tuple(r[k] for k in ROW_KEY): r["held_before"] for r in context}
    return [{**row, "held_before": held.get(tuple(row[k] for k in ROW_KEY), "")} for row in rows]


def committed_rows() -> list[dict]:
    """Every committed GPU row (harness/bench/data/*.csv), with what its process already held (``held_before``)."""
    return _with_context([row for path in sorted(DATA.glob("*.csv")) for row in load_gpu_rows(path)])


def heldout_rows() -> list[dict]:
    """Measured GPU rows kept apart to check the model on (harness/memory/data/heldout_h200.csv): never fitted to,
    never part of the fitted domain."""
    return _with_context(load_gpu_rows(HELDOUT_ROWS)) if HELDOUT_ROWS.exists() else []


def held_before(row: dict) -> tuple:
    """A row's ``held_before`` as the replay takes it: ((thread, workspace), ...), e.g. (("caller", "cublas"),)."""
    return tuple(tuple(item.split(":")) for item in row.get("held_before", "").split())


def row_spec(row: dict) -> BenchSpec:
    return BenchSpec(row["model"], tuple(int(n) for n in row["input_shape"].split("x")), int(row["batch"]),
                     row["mode"], device="cuda", precision=row["dtype"], cudnn_benchmark=row["cudnn_benchmark"] == "True")


def _dims(input_shape) -> int:
    return len(input_shape.split("x") if isinstance(input_shape, str) else input_shape) - 1


@lru_cache(maxsize=1)
def fitted_domain() -> dict:
    """What the workspace factors were fitted on, read from the committed rows: GPUs, precisions, layouts
    (channels-last or not), dimensionalities, cuDNN versions, cudnn.benchmark settings, execution modes."""
    rows = committed_rows()
    return {"gpu": sorted({r["gpu"] for r in rows}), "precision": sorted({r["dtype"] for r in rows}),
            "channels_last": sorted({r["channels_last"] == "True" for r in rows}),
            "dims": sorted({_dims(r["input_shape"]) for r in rows}), "cudnn": sorted({r["cudnn"] for r in rows}),
            "cudnn_benchmark": sorted({r["cudnn_benchmark"] == "True" for r in rows}),
            "exec_mode": sorted({r["exec_mode"] for r in rows}), "mode": sorted({r["mode"] for r in rows})}


def _gpu_matches(name: str, fitted: list[str]) -> bool:
    words = name.lower().replace("-", " ").split()
    return any(f.lower() in words or f.lower() in name.lower().replace(" ", "") for f in fitted)


def _cudnn_matches(version, fitted: list[str]) -> bool:
    """cuDNN as torch reports it (91900) or as the rows record it (9.19): major.minor compared."""
    text = str(version).strip()
    if text.isdigit() and len(text) >= 5:  # torch.backends.cudnn.version(): 91900 = 9.19.0
        number = int(text)
        text = f"{number // 10000}.{number % 10000 // 100}"
    return any(text.split(".")[:2] == f.split(".")[:2] for f in fitted)


def domain(spec: BenchSpec, gpu: str | None = None, cudnn=None, benchmark: bool | None | str = "spec") -> str:
    """``"fitted"`` when ``spec`` (on ``gpu``, with ``cudnn``, where known) lies inside what the workspace model
    was fitted on, else ``"extrapolated: <why>"``; torch.compile and CUDA graphs are ``"predicted as eager"``
    (the simulation runs the eager step). An unknown GPU, cuDNN or cudnn.benchmark setting (``None``: the planner,
    which is given a budget, not a run) is not held against the prediction; a known one outside the fit is.
    ``benchmark``: the cudnn.benchmark setting, by default the spec's."""
    benchmark = spec.cudnn_benchmark if benchmark == "spec" else benchmark
    fitted = fitted_domain()
    why = []
    if gpu and not _gpu_matches(gpu, fitted["gpu"]):
        why.append(f"GPU {gpu} (fitted on {', '.join(fitted['gpu'])})")
    if spec.precision not in fitted["precision"]:
        why.append(f"precision {spec.precision} (fitted on {', '.join(fitted['precision'])})")
    if spec.channels_last not in fitted["channels_last"]:
        why.append("channels-last" if spec.channels_last else "contiguous layout")
    dims = len(spec.input_shape) - 1
    if dims not in fitted["dims"]:
        why.append(f"{dims}D (fitted on {'/'.join(f'{d}D' for d in fitted['dims'])})")
    if cudnn not in (None, "") and not _cudnn_matches(cudnn, fitted["cudnn"]):
        why.append(f"cuDNN {cudnn} (fitted on {', '.join(fitted['cudnn'])})")
    if benchmark is not None and benchmark not in fitted["cudnn_benchmark"]:
        why.append(f"cudnn.benchmark {'on' if benchmark else 'off'} (fitted with it "
                   f"{'on' if fitted['cudnn_benchmark'] == [True] else 'off'})")
    if spec.mode not in fitted["mode"]:  # a whole-volume pass: its stitching simulated, its windows the step model's
        why.append(f"{spec.mode} pass (fitted on {' and '.join(fitted['mode'])} steps)")
    label = "fitted" if not why else "extrapolated: " + "; ".join(why)
    if spec.exec_mode != "eager":
        label = f"predicted as eager ({spec.exec_mode}); {label}"
    return label
