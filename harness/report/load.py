"""Every run under ``results/runs/`` (or given run folders / CSV files) as one tidy DataFrame.

Shards of one sweep run on different machines merge cleanly: rows are keyed by configuration and
machine, and where two runs measured the same configuration on the same machine the later row wins.
"""
from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pandas as pd

from harness.store.csvfile import read_rows
from harness.store.schema import KEY_COLUMNS, RENAMED_COLUMNS, RESULT_COLUMNS, RUNS_ROOT as RUNS, exec_mode_of

TEXT_COLUMNS = ["model", "source", "overrides", "input_shape", "mode", "device", "dtype", "exec_mode", "memory_kind", "error", "flop_error",
                "uncalled_modules", "zero_mac_ops", "unsupported_ops", "output_shape", "device_name", "cpu",
                "git_commit", "run_id", "finished_at", "torch", "cuda", "cudnn", "gpu_driver", "platform",
                "python"]


def result_files(paths=None) -> list[Path]:
    if not paths:
        return sorted(RUNS.glob("*/results.csv"))
    files = []
    for path in map(Path, paths):
        files += [path] if path.is_file() else sorted(path.glob("**/results.csv"))
    if not files:
        raise FileNotFoundError(f"no results.csv under {', '.join(map(str, paths))}")
    return files


def _read_csv(path: Path) -> pd.DataFrame:
    """One results file, without a torn last record (a run killed mid-write), which is reported."""
    contents = read_rows(path)
    if contents.torn:
        print(f"warning: {path}: left out a torn last record ({len(contents.torn)} characters, no "
              f"line end): an interrupted run; `--resume` that run to measure it again", file=sys.stderr)
    whole = io.BytesIO(path.read_bytes()[:contents.complete_bytes])
    frame = pd.read_csv(whole, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                        na_values={c: [""] for c in RESULT_COLUMNS + list(RENAMED_COLUMNS) if c not in TEXT_COLUMNS})
    return _upgrade(frame)


def _upgrade(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows written before the latency/throughput split: ``median_ms``/``iqr_ms`` were synchronized
    single steps (now ``latency_ms``/``latency_iqr_ms``) and their ``samples_per_s`` was batch / median
    (kept; ``step_ms`` stays empty, since no back-to-back blocks were timed); ``compile`` became
    ``exec_mode``; rows of runs without warm-up count as not measured."""
    frame = frame.rename(columns={old: new for old, new in RENAMED_COLUMNS.items() if new not in frame})
    if "source" not in frame:
        frame["source"] = "article"  # runs before peers and user models held the article's variants only
    if "exec_mode" not in frame:
        frame["exec_mode"] = [exec_mode_of(row) for row in frame.to_dict("records")]
    if "warm" not in frame:  # no record of warm-up at all (hand-made files): count the rows as measured
        warmup = frame["warmup"].fillna(0) if "warmup" in frame else 1
        frame["warm"] = (warmup >= 1) & (frame["error"] == "")
    frame["warm"] = frame["warm"].map(lambda v: str(v) == "True")
    for column in RESULT_COLUMNS:
        if column not in frame:
            frame[column] = "" if column in TEXT_COLUMNS else float("nan")
    return frame[RESULT_COLUMNS]


def load_results(paths=None) -> pd.DataFrame:
    files = result_files(paths)
    if not files:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frames = [_read_csv(f) for f in files]
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["finished_at", "run_id"], kind="stable")
    df = df.drop_duplicates(KEY_COLUMNS + ["device_name"], keep="last")
    dims = df["input_shape"].str.split("x")
    df["spatial_dims"] = dims.map(len) - 1
    df["elements"] = dims.map(lambda d: math.prod(int(n) for n in d[1:]))  # voxels or pixels per sample
    df["ok"] = (df["error"] == "") & df["warm"]  # measured fine, after a warm-up: fit for tables and baselines
    order = {name: i for i, name in enumerate(dict.fromkeys(df["model"]))}  # first appearance: the sweep's order
    df["model_order"] = df["model"].map(order)
    return df.sort_values(["device_name", "dtype", "model_order", "elements", "batch", "mode"],
                          kind="stable").reset_index(drop=True)


def variant_order(df: pd.DataFrame) -> list[str]:
    return list(df.sort_values("model_order")["model"].drop_duplicates())
