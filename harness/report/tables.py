"""Comparison tables for papers: variants side by side per device and precision, with ratios
against the plain ``unet3d`` baseline, at one reference point (input size and batch) per group.
Throughput and latency carry their 95% bootstrap interval where the raw samples allow."""
from __future__ import annotations

import math

import pandas as pd

from harness.stats import DRAWS, median_interval
from harness.store.schema import SOURCE_LABELS, row_key

BASELINE = "unet3d"
SOURCE_ORDER = {source: i for i, source in enumerate(SOURCE_LABELS)}


# --- intervals from raw samples --------------------------------------------------------------------

# Fewer samples, no interval: even the whole range of n samples holds the median only with probability
# 1 - 2**(1 - n) (0.94 for 5), so a "95%" interval of 2 or 3 samples would claim more than it can.
MIN_INTERVAL_SAMPLES = 5


def _interval(values) -> tuple[float, float]:
    interval = median_interval(values)
    return interval.low, interval.high


def sample_key(row) -> tuple:
    """Which raw samples a row owns: its run, finish time and configuration (``row_key``; a CSV row or a loaded one)."""
    return (str(row["run_id"]), str(row["finished_at"]), *row_key({**row, "batch": int(float(row["batch"]))}))


INTERVAL_COLUMNS = ["latency_low_ms", "latency_high_ms", "samples_per_s_low", "samples_per_s_high"]


def with_intervals(results: pd.DataFrame, samples: dict[tuple, dict[str, list[float]]]) -> pd.DataFrame:
    """``results`` plus the 95% intervals of latency (ms) and throughput (samples/s) of each row from its raw
    samples (``samples[sample_key(row)]``: ``latency_s`` and ``step_s``, seconds); NaN where fewer than
    ``MIN_INTERVAL_SAMPLES``."""
    columns = {name: [] for name in INTERVAL_COLUMNS}
    for row in results.to_dict("records"):
        raw = samples.get(sample_key(row), {})
        latency, steps = raw.get("latency_s", []), raw.get("step_s", [])
        low, high = _interval(latency) if len(latency) >= MIN_INTERVAL_SAMPLES else (math.nan, math.nan)
        columns["latency_low_ms"].append(1e3 * low)
        columns["latency_high_ms"].append(1e3 * high)
        low, high = _interval(steps) if len(steps) >= MIN_INTERVAL_SAMPLES else (math.nan, math.nan)
        columns["samples_per_s_low"].append(row["batch"] / high)  # the slowest step: the fewest samples/s
        columns["samples_per_s_high"].append(row["batch"] / low)
    return results.assign(**columns)


def reference_point(rows: pd.DataFrame) -> tuple[str, int] | None:
    """The (input_shape, batch) measured without error, in both modes, for the most variants;
    ties go to the larger input, then the smaller batch."""
    ok = rows[rows["ok"]]
    both = ok.groupby(["input_shape", "batch", "model"])["mode"].nunique().reset_index()
    both = both[both["mode"] == 2]
    if both.empty:
        return None
    counts = both.groupby(["input_shape", "batch"])["model"].nunique().reset_index(name="variants")
    counts["elements"] = counts["input_shape"].map(lambda s: _elements(s))
    best = counts.sort_values(["variants", "elements", "batch"], ascending=[False, False, True]).iloc[0]
    return best["input_shape"], int(best["batch"])


def _elements(shape: str) -> int:
    out = 1
    for n in shape.split("x")[1:]:
        out *= int(n)
    return out


def comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (device, device_name, dtype, execution, spatial_dims, model) at that group's reference
    point. Throughput (samples/s) comes from back-to-back steps, latency from synchronized single steps."""
    rows = []
    for (device, device_name, dtype, exec_mode, channels_last, spatial_dims), group in df.groupby(
            ["device", "device_name", "dtype", "exec_mode", "channels_last", "spatial_dims"], sort=True):
        point = reference_point(group)
        if point is None:
            continue
        shape, batch = point
        at_point = group[(group["input_shape"] == shape) & (group["batch"] == batch) & group["ok"]]
        for model, by_model in at_point.groupby("model_order", sort=True):
            inf = by_model[by_model["mode"] == "inference"]
            train = by_model[by_model["mode"] == "train"]
            if inf.empty or train.empty:
                continue
            inf, train = inf.iloc[0], train.iloc[0]
            rows.append({
                "device": device, "device_name": device_name, "dtype": dtype, "spatial_dims": spatial_dims,
                "exec_mode": exec_mode, "channels_last": channels_last,
                "model": inf["model"], "source": inf["source"], "model_order": model, "input_shape": shape,
                "batch": batch,
                "params_m": inf["params_total"] / 1e6, "params_used_m": inf["params_used"] / 1e6,
                "gmacs": inf["gmacs"],
                "inference_samples_per_s": inf["samples_per_s"], "inference_ms": inf["latency_ms"],
                "inference_iqr_ms": inf["latency_iqr_ms"], "train_samples_per_s": train["samples_per_s"],
                "train_ms": train["latency_ms"], "train_iqr_ms": train["latency_iqr_ms"],
                **{f"{mode}_{column}": row.get(column, float("nan")) for mode, row in (("inference", inf), ("train", train))
                   for column in INTERVAL_COLUMNS},
                "train_step_gflop": train["step_gflop"], "train_tflops": train["achieved_tflops"],
                "train_mfu": train["mfu"],
                "inference_peak_mb": inf["peak_mem_mb"], "train_peak_mb": train["peak_mem_mb"],
                "memory_kind": inf["memory_kind"],
                "run_id": inf["run_id"], "git_commit": inf["git_commit"], "torch": inf["torch"],
                "cuda": inf["cuda"], "threads": inf["threads"],
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    setting = ["device_name", "dtype", "exec_mode", "channels_last"]
    for column, ratio in [("inference_samples_per_s", "x_inference"), ("train_samples_per_s", "x_train"),
                          ("gmacs", "x_gmacs"), ("train_peak_mb", "x_train_mem")]:
        base = table[table["model"] == BASELINE].set_index(setting)[column]
        keys = list(table[setting].itertuples(index=False, name=None))
        table[ratio] = [row / base.get(key, float("nan")) if sd == 3 else float("nan")
                        for row, key, sd in zip(table[column], keys, table["spatial_dims"])]
    return table


DISPLAY = {
    "model": "Variant", "input_shape": "Input (C×D×H×W)", "batch": "Batch", "params_m": "Params (M)",
    "params_used_m": "Used params (M)", "gmacs": "GMACs/sample", "inference_samples_per_s": "Inference (samples/s) [95% CI]",
    "inference_latency": "Inference latency, ms [95% CI]", "train_samples_per_s": "Train (samples/s) [95% CI]",
    "train_latency": "Train step latency, ms [95% CI]", "train_step_gflop": "Train GFLOP/step",
    "train_tflops": "Train TFLOP/s", "train_mfu": "Train MFU (%)", "inference_peak_mb": "Peak mem. inference (MB)",
    "train_peak_mb": "Peak mem. train (MB)", "x_inference": "× inference vs unet3d",
    "x_train": "× train vs unet3d", "x_gmacs": "× GMACs vs unet3d",
}


def display_table(group: pd.DataFrame) -> pd.DataFrame:
    """Human columns with fixed formatting (strings), so every output format shows the same digits."""
    out = pd.DataFrame({
        "model": [m if s in ("article", "") else f"{m} ({SOURCE_LABELS.get(s, s)})"
                  for m, s in zip(group["model"], group["source"])],
        "input_shape": group["input_shape"], "batch": group["batch"].map(str),
        "params_m": group["params_m"].map("{:.1f}".format), "params_used_m": group["params_used_m"].map("{:.1f}".format),
        "gmacs": group["gmacs"].map("{:.2f}".format),
        "inference_samples_per_s": _throughput(group, "inference"), "inference_latency": _latency(group, "inference"),
        "train_samples_per_s": _throughput(group, "train"), "train_latency": _latency(group, "train"),
        "train_step_gflop": group["train_step_gflop"].map(_number("{:.1f}")),
        "train_tflops": group["train_tflops"].map(_number("{:.3g}")),
        "train_mfu": (100 * group["train_mfu"]).map(_number("{:.1f}")),
        "inference_peak_mb": group["inference_peak_mb"].map("{:.0f}".format),
        "train_peak_mb": group["train_peak_mb"].map("{:.0f}".format),
        "x_inference": group["x_inference"].map(_ratio), "x_train": group["x_train"].map(_ratio),
        "x_gmacs": group["x_gmacs"].map(_ratio),
    })
    if group["train_step_gflop"].isna().all():  # runs from before FLOPs per step were counted
        out = out.drop(columns=["train_step_gflop", "train_tflops", "train_mfu"])
    return out.rename(columns=DISPLAY).reset_index(drop=True)


def _with_interval(group: pd.DataFrame, value: str, low: str, high: str, form: str) -> list[str]:
    """``value [low, high]``, or the value alone where the samples gave no interval."""
    lows = group[low] if low in group else pd.Series(math.nan, index=group.index)
    highs = group[high] if high in group else pd.Series(math.nan, index=group.index)
    return [form.format(v) if pd.isna(lo) or pd.isna(hi) else f"{form.format(v)} [{form.format(lo)}, {form.format(hi)}]"
            for v, lo, hi in zip(group[value], lows, highs)]


def _throughput(group: pd.DataFrame, mode: str) -> list[str]:
    return _with_interval(group, f"{mode}_samples_per_s", f"{mode}_samples_per_s_low", f"{mode}_samples_per_s_high",
                          "{:.2f}")


def _latency(group: pd.DataFrame, mode: str) -> list[str]:
    return _with_interval(group, f"{mode}_ms", f"{mode}_latency_low_ms", f"{mode}_latency_high_ms", "{:.1f}")


def _number(form: str):
    return lambda value: "" if pd.isna(value) else form.format(value)


def _ratio(value) -> str:
    return "" if pd.isna(value) else f"{value:.2f}"


def runs_and_commits(group: pd.DataFrame) -> str:
    """Each run of the rows with its own commit: rows of one table can come from several runs at several commits."""
    pairs = sorted({(str(run), str(commit or "")[:10]) for run, commit in zip(group["run_id"], group["git_commit"])})
    named = [f"{run} (commit {commit or 'unrecorded'})" for run, commit in pairs]
    return ("run " if len(named) == 1 else "runs ") + ", ".join(named)


def groups(table: pd.DataFrame):
    """(title, footnote, rows) per device, precision and execution setting, 3D before 2D."""
    for (device_name, dtype, exec_mode, channels_last), group in table.groupby(
            ["device_name", "dtype", "exec_mode", "channels_last"], sort=True):
        group = group.assign(source_order=group["source"].map(SOURCE_ORDER).fillna(0)).sort_values(
            ["spatial_dims", "source_order", "model_order"], ascending=[False, True, True], kind="stable")
        first = group.iloc[0]
        memory = ("CUDA peak allocated" if first["memory_kind"] == "cuda_allocated"
                  else "rise of process peak RSS during the step")
        title = f"{first['device'].upper()}: {device_name}, {dtype}, {exec_mode}{', channels-last' if channels_last else ''}"
        footnote = (f"Measured on {device_name} ({first['device']}), torch {first['torch']}"
                    f"{', CUDA ' + first['cuda'] if first['cuda'] else ''}, {int(first['threads'])} threads; "
                    f"{runs_and_commits(group)}. Throughput (samples/s) is from steps issued "
                    f"back to back; latency is the median synchronized step; in brackets the 95% bootstrap interval "
                    f"of the median from the raw samples (details.jsonl; {DRAWS} resamples), where a row kept at least "
                    f"{MIN_INTERVAL_SAMPLES} of them (throughput blocks, latency rounds); "
                    f"MFU is achieved FLOP/s over this machine's measured matmul peak; memory is the {memory}; "
                    f"GMACs are multiply-adds per sample "
                    f"(FLOPs = 2 × MACs). Ratios compare 3D variants with unet3d at the same point; "
                    f"(peer) marks networks built by MONAI or nnU-Net's dynamic-network-architectures, (follow-up) "
                    f"the UNet++ variants answering the article's closing question, (yours) models given with --model.")
        yield title, footnote, group
