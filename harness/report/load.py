"""Every run under ``results/runs/`` (or given run folders / CSV files) as one tidy DataFrame.

Shards of one sweep run on different machines merge cleanly: rows are keyed by configuration and
machine, and where two runs measured the same configuration on the same machine the later row wins.
Every run is read by the store's one loader (``harness.store.load.read_run``): a damaged run raises
InputFileError (exit 2), dropped lines are warned about on stderr with their count and file.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

from harness.options import InputFileError
from harness.store.load import StoredRun, read_run
from harness.store.schema import KEY_COLUMNS, RENAMED_COLUMNS, RESULT_COLUMNS, RUNS_ROOT as RUNS, exec_mode_of

TEXT_COLUMNS = ["model", "source", "overrides", "input_shape", "mode", "device", "dtype", "exec_mode", "memory_kind", "error",
                "flop_error",
                "uncalled_modules", "zero_mac_ops", "unsupported_ops", "output_shape", "device_name", "cpu",
                "git_commit", "run_id", "finished_at", "torch", "cuda", "cudnn", "gpu_driver", "platform",
                "python"]


def result_files(paths=None) -> list[Path]:
    """The results.csv files of ``paths`` (run folders, folders of runs, results.csv files; default: every run
    under results/runs/). A path that does not exist, or holds no results.csv, raises InputFileError."""
    if not paths:
        return sorted(RUNS.glob("*/results.csv"))
    files = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputFileError(f"{path}: no such run folder or file. Way out: give run folders under "
                                 f"results/runs/ (or results.csv files), or none for all of them.")
        found = [path] if path.is_file() else sorted(path.glob("**/results.csv"))
        if not found:
            raise InputFileError(f"{path}: no results.csv in it or under it, so it holds no run. Way out: give "
                                 f"run folders under results/runs/ (or results.csv files), or none for all of them.")
        files += found
    return files


def load_runs(paths=None, warn: bool = True) -> list[StoredRun]:
    """Every run of ``paths`` (see ``result_files``), read by the store's loader; its warnings printed."""
    runs = []
    for path in result_files(paths):
        run = read_run(path.parent)
        if warn:
            run.warn()
        runs.append(run)
    return runs


def _frame(run: StoredRun) -> pd.DataFrame:
    """One run's rows as the report's columns (numbers parsed as pandas parses a results.csv)."""
    text = io.StringIO(newline="")
    columns = list(dict.fromkeys(column for row in run.rows for column in row)) or list(run.header)
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(run.rows)
    text.seek(0)
    frame = pd.read_csv(text, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
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


def load_results(paths=None, runs: list[StoredRun] | None = None) -> pd.DataFrame:
    """Every row of ``runs`` (default: ``load_runs(paths)``) as one DataFrame; the later row of a configuration
    measured twice on one machine wins."""
    runs = load_runs(paths) if runs is None else runs
    frames = [_frame(run) for run in runs if run.rows]
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
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
