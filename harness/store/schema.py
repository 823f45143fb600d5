"""The results contract, once: where results live, the columns of ``results.csv`` (documented in
docs/results.md) and what makes two rows the same configuration, derived from the spec's identity
(``BenchSpec.key``). No torch here, so reports read results without it."""
from dataclasses import MISSING, fields
from pathlib import Path

from harness.bench.spec import (KEY_FIELDS, LOADER_KEY_FIELDS, NO_LOADER, PATCH_KEY_FIELDS, VOLUME_MODE, BenchSpec,
                                Measurement)

# Where a variant comes from, as tables and listings label it (Family.source), in display order.
SOURCE_LABELS = {"article": "article", "follow-up": "follow-up", "peer": "peer", "user": "yours"}

# Under the directory the harness runs in: a checkout of this repository, or a lab's own repository.
RESULTS_ROOT = Path.cwd() / "results"
RUNS_ROOT = RESULTS_ROOT / "runs"

MEASURE_COLUMNS = [
    "model", "source", "overrides", "input_shape", "batch", "mode", "device", "dtype", "exec_mode", "channels_last",
    "cudnn_benchmark", "warmup", "rounds", "blocks", "warm", "setup_s",
    "latency_ms", "latency_iqr_ms", "latency_p90_ms", "step_ms", "block_steps", "samples_per_s",
    "peak_mem_mb", "peak_reserved_mb", "memory_kind",
    "gmacs", "step_gflop", "achieved_tflops", "peak_tflops", "mfu", "flop_error",
    "params_total", "params_used", "uncalled_modules", "zero_mac_ops", "unsupported_ops", "output_shape",
    "max_batch", "error",
    # --find-max-batch rows: beside max_batch (measured), the largest batch the memory model predicts to fit
    "predicted_max_batch",
    # CUDA rows: the memory model's prediction of peak_mem_mb and its live-tensor floor (docs/memory.md)
    "predicted_peak_mb", "predicted_floor_mb",
]
ENV_COLUMNS = ["torch", "cuda", "cudnn", "cudnn_tf32", "matmul_tf32", "device_name", "gpu_driver", "gpu_sm_clock_mhz",
               "gpu_mem_clock_mhz", "gpu_power_limit_w", "cpu", "cpu_count", "threads", "python", "platform",
               "git_commit", "git_dirty", "seed", "gpu_max_sm_clock_mhz", "gpu_nvml",
               "slurm_job_id", "slurm_array_task_id", "node"]
# Whole-volume rows (mode "volume", docs/volume.md); empty on every other row. Appended after the rest so that
# no column of an older run moves.
VOLUME_COLUMNS = ["volume_shape", "roi", "overlap", "blend", "sw_batch_size", "mirror", "windows", "forward_passes",
                  "volume_s", "volume_iqr_s", "volumes_per_s", "mvox_per_s", "stitch_fraction", "volume_gflop",
                  "volume_padded", "sw_batch_best", "stitch_fraction_low", "stitch_fraction_high"]
# CUDA rows: whether the memory prediction lies inside what its workspace model was fitted on ("fitted",
# "extrapolated: <why>", "predicted as eager (...)"; docs/memory.md). Appended last, as the volume columns.
MEMORY_COLUMNS = ["predicted_domain"]
# Training rows: what fed the step (``loader``: "none" for tensors already on the device, else the pipeline) and, for
# loader-fed rows, the DataLoader's ``workers`` and the share of each step spent waiting for the next batch (its
# mean over the throughput blocks and 95% interval; docs/results.md, docs/pipeline.md). Appended last, as the rest.
LOADER_COLUMNS = ["loader", "workers", "data_wait", "data_wait_low", "data_wait_high"]
RESULT_COLUMNS = (MEASURE_COLUMNS + ENV_COLUMNS + ["run_id", "finished_at"] + VOLUME_COLUMNS + MEMORY_COLUMNS
                  + LOADER_COLUMNS)
# A spec field's column where the two names differ: the results contract calls the precision ``dtype``.
COLUMN_OF_FIELD = {"precision": "dtype"}
# What makes two rows the same configuration: BenchSpec.key's fields, as CSV columns (the window columns count for
# volume rows only, the loader columns for loader-fed rows only: ``row_key``).
KEY_COLUMNS = [COLUMN_OF_FIELD.get(name, name) for name in KEY_FIELDS + LOADER_KEY_FIELDS]
LOADER_KEY_COLUMNS = [COLUMN_OF_FIELD.get(name, name) for name in LOADER_KEY_FIELDS]
PATCH_KEY_COLUMNS = [COLUMN_OF_FIELD.get(name, name) for name in PATCH_KEY_FIELDS]
# Columns of runs written before the latency/throughput split, and what replaced them.
RENAMED_COLUMNS = {"median_ms": "latency_ms", "iqr_ms": "latency_iqr_ms"}
# THE legacy defaults: columns that runs written by an older harness lack, and the value each row of such a
# run meant (as CSV text). ``exec_mode`` is derived from the old boolean ``compile`` column (``exec_mode_of``);
# a key column not named here and missing from a row takes the BenchSpec field's default (``key_default``),
# so a setting added to the key later (e.g. ``cudnn_benchmark``) leaves old runs loadable with their keys.
LEGACY_DEFAULTS = {"source": "article",  # runs before peers and user models held the article's variants only
                   "overrides": "", "device": "cpu", "dtype": "fp32", "channels_last": "False",
                   "cudnn_benchmark": "False",
                   "loader": NO_LOADER}  # runs before --loader fed every step tensors already on the device
# The key columns a results.csv must hold itself (no default can stand in for them).
REQUIRED_COLUMNS = ["model", "input_shape", "batch", "mode"]

_FIELD_OF_COLUMN = {column: field for field, column in COLUMN_OF_FIELD.items()}
_SPEC_FIELDS = {f.name: f for f in fields(BenchSpec)}
_PARSE = {"bool": lambda v: str(v) == "True", "int": int, "float": float}


def key_default(column: str) -> str | None:
    """What a row that lacks key ``column`` meant: the legacy default, else the BenchSpec field's default as CSV
    text; None when the field has no default (the row cannot be keyed without the column)."""
    if column in LEGACY_DEFAULTS:
        return LEGACY_DEFAULTS[column]
    spec_field = _SPEC_FIELDS.get(_FIELD_OF_COLUMN.get(column, column))
    if spec_field is None or spec_field.default is MISSING:
        return None
    default = spec_field.default
    return "x".join(map(str, default)) if isinstance(default, tuple) else str(default)


def with_legacy_defaults(row: dict) -> dict:
    """The row as the current harness writes it: renamed columns under their new names, missing columns that
    older runs lack filled from ``LEGACY_DEFAULTS``, ``exec_mode`` derived from ``compile``. Text stays text."""
    upgraded = {RENAMED_COLUMNS.get(column, column): value for column, value in row.items()
                if not (column in RENAMED_COLUMNS and RENAMED_COLUMNS[column] in row)}
    for column, default in LEGACY_DEFAULTS.items():
        if column not in upgraded:
            upgraded[column] = default
    upgraded["exec_mode"] = exec_mode_of(row)
    return upgraded


def exec_mode_of(row: dict) -> str:
    """``exec_mode`` of a row; older rows had a boolean ``compile`` column instead."""
    if row.get("exec_mode"):
        return row["exec_mode"]
    return "compile" if str(row.get("compile", "")) == "True" else "eager"


def _key_value(column: str, value):
    spec_field = _SPEC_FIELDS.get(_FIELD_OF_COLUMN.get(column, column))
    kind = str(spec_field.type) if spec_field else "str"
    if kind in _PARSE and (value is None or value == ""):
        value = key_default(column)
        if value is None:
            raise ValueError(f"{column} is empty")
    return _PARSE.get(kind, str)(value)


def row_key(row: dict) -> tuple:
    """The BenchSpec.key of a CSV row (values arrive as text; bools, ints and floats parsed by the spec field's
    type). The window columns belong to the key of volume rows only, and the loader columns to the key of
    loader-fed rows only, so rows of runs written before they existed keep their keys. A key column the row lacks
    (a run older than that column) takes its legacy default (``key_default``); a row without ``model``,
    ``input_shape``, ``batch`` or ``mode`` raises KeyError."""
    values = {**row, "exec_mode": exec_mode_of(row)}
    columns = KEY_COLUMNS[:len(KEY_FIELDS)] if row.get("mode") == VOLUME_MODE else PATCH_KEY_COLUMNS
    loader = row.get("loader")  # text; NaN where a report frame holds a run older than the column
    if isinstance(loader, str) and loader not in ("", NO_LOADER):  # a loader-fed row: its loader and workers too
        columns = columns + LOADER_KEY_COLUMNS
    key = []
    for column in columns:
        value = values.get(column)
        if value is None:
            value = key_default(column)
            if value is None:
                raise KeyError(column)
        key.append(_key_value(column, value))
    return tuple(key)


# An error that says the configuration cannot run here at all (the envelope's refusal): measuring it
# again gives the same answer. Every other error (a raising step, out of memory, a non-finite output) is
# a failed measurement.
REFUSAL_PREFIX = "unsupported:"


def measured_fine(row: dict) -> bool:
    """A row fit for tables and baselines: no error, and timed after a (settled) warm-up."""
    return row.get("error", "") == "" and str(row.get("warm", "")) == "True"


def is_refusal(row: dict) -> bool:
    return str(row.get("error", "")).startswith(REFUSAL_PREFIX)


def is_final(row: dict) -> bool:
    """Whether ``--resume`` keeps a row: a good measurement, a refusal, or a row timed without warm-up
    because its options asked for none (``--warmup 0``, the smoke profile: measuring it again changes
    nothing). A failed step, a non-finite output or a warm-up that never settled is measured again."""
    if row.get("error", ""):
        return is_refusal(row)
    return measured_fine(row) or str(row.get("warmup", "")) in ("0", "")


def loader_columns(m: Measurement) -> dict:
    """The loader columns of a row (``LOADER_COLUMNS``): ``loader`` on every row ("none" when tensors fed the step);
    the workers and the data-wait share (rounded as the stitch fraction) on loader-fed rows only."""
    spec = m.spec
    if spec.loader == NO_LOADER:
        return {"loader": NO_LOADER, "workers": "", "data_wait": "", "data_wait_low": "", "data_wait_high": ""}
    interval = m.data_wait_interval
    return {"loader": spec.loader, "workers": spec.workers,
            "data_wait": "" if m.data_wait is None else round(m.data_wait, 4),
            "data_wait_low": "" if interval is None else round(interval[0], 4),
            "data_wait_high": "" if interval is None else round(interval[1], 4)}
