"""Every run under ``results/runs/`` (or given run folders / CSV files) as one tidy DataFrame.

Shards of one sweep run on different machines merge cleanly: rows are keyed by configuration and
machine, and where two runs measured the same configuration on the same machine the later row wins.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..columns import KEY_COLUMNS, RESULT_COLUMNS

RESULTS = Path(__file__).resolve().parents[2] / "results"
RUNS = RESULTS / "runs"
TEXT_COLUMNS = ["model", "overrides", "input_shape", "mode", "device", "dtype", "memory_kind", "error",
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


def load_results(paths=None) -> pd.DataFrame:
    files = result_files(paths)
    if not files:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    frames = [pd.read_csv(f, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values={
        c: [""] for c in RESULT_COLUMNS if c not in TEXT_COLUMNS}) for f in files]
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["finished_at", "run_id"], kind="stable")
    df = df.drop_duplicates(KEY_COLUMNS + ["device_name"], keep="last")
    dims = df["input_shape"].str.split("x")
    df["spatial_dims"] = dims.map(len) - 1
    df["elements"] = dims.map(lambda d: math.prod(int(n) for n in d[1:]))  # voxels or pixels per sample
    df["ok"] = df["error"] == ""
    order = {name: i for i, name in enumerate(dict.fromkeys(df["model"]))}  # first appearance: the sweep's order
    df["model_order"] = df["model"].map(order)
    return df.sort_values(["device_name", "dtype", "model_order", "elements", "batch", "mode"],
                          kind="stable").reset_index(drop=True)


def variant_order(df: pd.DataFrame) -> list[str]:
    return list(df.sort_values("model_order")["model"].drop_duplicates())
