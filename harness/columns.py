"""The results contract: columns of ``results.csv`` (documented in the README). No torch here, so
reports can read results without it."""

MEASURE_COLUMNS = [
    "model", "overrides", "input_shape", "batch", "mode", "device", "dtype", "channels_last", "compile",
    "cudnn_benchmark", "warmup", "rounds", "median_ms", "iqr_ms", "samples_per_s", "peak_mem_mb",
    "peak_reserved_mb", "memory_kind", "gmacs", "params_total", "params_used", "uncalled_modules",
    "zero_mac_ops", "unsupported_ops", "output_shape", "max_batch", "error",
]
ENV_COLUMNS = ["torch", "cuda", "cudnn", "cudnn_tf32", "device_name", "gpu_driver", "cpu", "cpu_count",
               "threads", "python", "platform", "git_commit", "git_dirty", "seed"]
RESULT_COLUMNS = MEASURE_COLUMNS + ENV_COLUMNS + ["run_id", "finished_at"]
# What makes two rows the same configuration (BenchSpec.key, in CSV form).
KEY_COLUMNS = ["model", "overrides", "input_shape", "batch", "mode", "device", "dtype", "channels_last",
               "compile"]
