"""The results contract, once: where results live, the columns of ``results.csv`` (documented in
docs/results.md) and what makes two rows the same configuration, derived from the spec's identity
(``BenchSpec.key``). No torch here, so reports read results without it."""
from pathlib import Path

from harness.bench.spec import KEY_FIELDS, PATCH_KEY_FIELDS, VOLUME_MODE

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
                  "volume_padded", "sw_batch_best"]
RESULT_COLUMNS = MEASURE_COLUMNS + ENV_COLUMNS + ["run_id", "finished_at"] + VOLUME_COLUMNS
# A spec field's column where the two names differ: the results contract calls the precision ``dtype``.
COLUMN_OF_FIELD = {"precision": "dtype"}
# What makes two rows the same configuration: BenchSpec.key's fields, as CSV columns.
KEY_COLUMNS = [COLUMN_OF_FIELD.get(name, name) for name in KEY_FIELDS]
# Columns of runs written before the latency/throughput split, and what replaced them.
RENAMED_COLUMNS = {"median_ms": "latency_ms", "iqr_ms": "latency_iqr_ms"}


def exec_mode_of(row: dict) -> str:
    """``exec_mode`` of a row; older rows had a boolean ``compile`` column instead."""
    if row.get("exec_mode"):
        return row["exec_mode"]
    return "compile" if str(row.get("compile", "")) == "True" else "eager"


def row_key(row: dict) -> tuple:
    """The BenchSpec.key of a CSV row (values arrive as text). The window columns belong to the key of volume
    rows only, so rows of runs written before they existed keep their keys."""
    parse = {"batch": int, "channels_last": lambda v: str(v) == "True", "overlap": float, "sw_batch_size": int,
             "mirror": lambda v: str(v) == "True"}
    values = {**row, "exec_mode": exec_mode_of(row)}
    columns = KEY_COLUMNS if row.get("mode") == VOLUME_MODE else KEY_COLUMNS[:len(PATCH_KEY_FIELDS)]
    return tuple(parse.get(column, str)(values[column]) for column in columns)


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
