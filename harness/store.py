"""Results on disk: ``results/runs/<run-id>/`` with ``results.csv`` (one row per configuration,
appended and flushed as each finishes, so an interrupted sweep keeps every finished row),
``details.jsonl`` (raw samples and per-operator breakdowns, one line per row), ``environment.json``
and pytest-benchmark's raw JSON."""
from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .columns import ENV_COLUMNS, RESULT_COLUMNS
from .spec import Measurement, shape_text

RESULTS_ROOT = Path(__file__).resolve().parent.parent / "results"
RUNS_ROOT = RESULTS_ROOT / "runs"



def new_run_id(device: str, profile: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{device}-{profile}"


def _round(value, digits=4):
    return "" if value is None else round(value, digits)


def to_row(m: Measurement, env: dict, run_id: str) -> dict:
    spec, work = m.spec, m.work
    row = {
        "model": spec.model, "overrides": spec.overrides, "input_shape": shape_text(spec.input_shape),
        "batch": spec.batch, "mode": spec.mode, "device": spec.device, "dtype": spec.precision,
        "channels_last": spec.channels_last, "compile": spec.compile, "cudnn_benchmark": spec.cudnn_benchmark,
        "warmup": spec.warmup, "rounds": spec.rounds,
        "median_ms": _round(m.median_ms), "iqr_ms": _round(m.iqr_ms), "samples_per_s": _round(m.samples_per_s),
        "peak_mem_mb": _round(m.peak_mem_mb, 1), "peak_reserved_mb": _round(m.peak_reserved_mb, 1),
        "memory_kind": m.extra.get("memory_kind", ""),
        "gmacs": _round(work.macs / 1e9, 6) if work else "",
        "params_total": work.params_total if work else "", "params_used": work.params_used if work else "",
        "uncalled_modules": " ".join(n for n in work.uncalled_modules if "." not in n) if work else "",
        "zero_mac_ops": " ".join(work.zero_mac_ops) if work else "",
        "unsupported_ops": " ".join(work.unsupported_ops) if work else "",
        "output_shape": shape_text(m.output_shape) if m.output_shape else "",
        "max_batch": "" if m.max_batch is None else m.max_batch, "error": m.error,
    }
    row.update({k: env.get(k, "") for k in ENV_COLUMNS})
    row.update(run_id=run_id, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return row


def row_key(row: dict) -> tuple:
    """The BenchSpec.key of a CSV row (values arrive as text)."""
    return (row["model"], row["overrides"], row["input_shape"], int(row["batch"]), row["mode"],
            row["device"], row["dtype"], row["channels_last"] == "True", row["compile"] == "True")


class RunStore:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "results.csv"
        self.details_path = self.run_dir / "details.jsonl"

    def write_environment(self, env: dict, **run_options) -> None:
        path = self.run_dir / "environment.json"
        record = {"environment": env, "options": run_options}
        if path.exists():  # a resumed run: keep the first record, add this one
            previous = json.loads(path.read_text())
            record = {**previous, "resumed": previous.get("resumed", []) + [record]}
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def completed_keys(self) -> set[tuple]:
        if not self.csv_path.exists():
            return set()
        with self.csv_path.open(newline="") as handle:
            return {row_key(row) for row in csv.DictReader(handle)}

    def append(self, m: Measurement, env: dict) -> dict:
        row = to_row(m, env, self.run_id)
        new_file = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
            if new_file:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
            os.fsync(handle.fileno())
        with self.details_path.open("a") as handle:
            handle.write(json.dumps(details(m), sort_keys=True) + "\n")
        return row


def details(m: Measurement) -> dict:
    """Everything raw about one row: the samples and, when counted, the per-operator breakdown."""
    work = m.work
    return {
        "spec": {**m.spec.__dict__, "input_shape": list(m.spec.input_shape)},
        "times_s": list(m.times_s),
        "macs_by_operator": work.macs_by_operator if work else {},
        "zero_mac_ops": work.zero_mac_ops if work else {},
        "unsupported_ops": work.unsupported_ops if work else {},
        "uncalled_modules": list(work.uncalled_modules) if work else [],
        "error": m.error,
    }
