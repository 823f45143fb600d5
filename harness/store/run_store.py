"""A run folder, ``results/runs/<run-id>/``: ``results.csv`` (one row per configuration, appended and
fsynced as each finishes, so an interrupted sweep keeps every finished row), ``details.jsonl`` (raw
samples and per-operator breakdowns, one line per row), ``environment.json`` and pytest-benchmark's raw
JSON.

The CSV row is the commit record of a configuration: its details line is written first, so a run
killed between the two leaves an orphan details line (dropped on resume), never a row without details.
"""
from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from harness.bench.machine import MACHINE_FACTS, PER_SHARD_FACTS
from harness.bench.spec import VOLUME_MODE, BenchSpec, Measurement, shape_text
from harness.store.csvfile import drop_torn_tail, read_rows
from harness.store.schema import ENV_COLUMNS, RESULT_COLUMNS, VOLUME_COLUMNS, is_final, loader_columns, row_key

# Run options that must match for a resumed run's rows to be comparable with the first attempt's.
RESUME_MUST_MATCH = ("device", "profile", "precision", "channels_last", "exec_mode", "cudnn_benchmark", "rounds",
                     "warmup", "blocks", "threads")
# Environment facts that must match likewise: the machine (threads are compared as an option).
ENV_MUST_MATCH = tuple(fact for fact in MACHINE_FACTS if fact not in PER_SHARD_FACTS)


def new_run_id(device: str, profile: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{device}-{profile}"


def _round(value, digits=4):
    return "" if value is None else round(value, digits)


def to_row(m: Measurement, env: dict, run_id: str) -> dict:
    spec, work = m.spec, m.work
    row = {
        "model": spec.model, "source": m.source, "overrides": spec.overrides,
        "input_shape": shape_text(spec.input_shape),
        "batch": spec.batch, "mode": spec.mode, "device": spec.device, "dtype": spec.precision,
        "exec_mode": spec.exec_mode, "channels_last": spec.channels_last, "cudnn_benchmark": spec.cudnn_benchmark,
        "warmup": spec.warmup, "rounds": spec.rounds, "blocks": spec.blocks,
        "warm": m.warm if not m.error else "", "setup_s": _round(m.setup_s),
        "latency_ms": _round(m.latency_ms), "latency_iqr_ms": _round(m.latency_iqr_ms),
        "latency_p90_ms": _round(m.latency_p90_ms), "step_ms": _round(m.step_ms),
        "block_steps": m.block_steps or "", "samples_per_s": _round(m.samples_per_s),
        "peak_mem_mb": _round(m.peak_mem_mb, 1), "peak_reserved_mb": _round(m.peak_reserved_mb, 1),
        "memory_kind": m.extra.get("memory_kind", ""),
        "gmacs": _round(work.macs / 1e9, 6) if work else "",
        "step_gflop": _round(m.step_gflop, 3), "achieved_tflops": _round(m.achieved_tflops, 5),
        "peak_tflops": _round(m.peak_tflops, 4), "mfu": _round(m.mfu, 5), "flop_error": m.flop_error,
        "params_total": work.params_total if work else "", "params_used": work.params_used if work else "",
        "uncalled_modules": " ".join(n for n in work.uncalled_modules if "." not in n) if work else "",
        "zero_mac_ops": " ".join(work.zero_mac_ops) if work else "",
        "unsupported_ops": " ".join(work.unsupported_ops) if work else "",
        "output_shape": shape_text(m.output_shape) if m.output_shape else "",
        "max_batch": "" if m.max_batch is None else m.max_batch, "error": m.error,
        "predicted_max_batch": "" if m.predicted_max_batch is None else m.predicted_max_batch,
    }
    row.update({k: env.get(k, "") for k in ENV_COLUMNS})
    row.update(run_id=run_id, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    row.update(_volume_columns(m))
    row.update(predicted_peak_mb=_round(m.extra.get("predicted_peak_mb"), 1),  # CUDA rows (docs/memory.md)
               predicted_floor_mb=_round(m.extra.get("predicted_floor_mb"), 1),
               predicted_domain=m.extra.get("predicted_domain", ""))
    row.update(loader_columns(m))  # what fed a training step, and its data wait (docs/pipeline.md)
    return row


def _volume_columns(m: Measurement) -> dict:
    """The whole-volume columns (docs/volume.md): empty unless the row is a volume (mode ``volume``)."""
    spec = m.spec
    if spec.mode != VOLUME_MODE:
        return {column: "" for column in VOLUME_COLUMNS}
    passes = m.forward_passes
    return {
        "volume_shape": shape_text(spec.input_shape), "roi": shape_text(spec.roi), "overlap": spec.overlap,
        "blend": spec.blend, "sw_batch_size": spec.sw_batch_size, "mirror": spec.mirror,
        "windows": "" if m.windows is None else m.windows, "forward_passes": "" if passes is None else passes,
        "volume_s": _round(m.volume_s, 6), "volume_iqr_s": _round(m.volume_iqr_s, 6),
        "volumes_per_s": _round(m.volumes_per_s, 6), "mvox_per_s": _round(m.mvox_per_s, 5),
        "stitch_fraction": _round(m.stitch_fraction, 4), "volume_gflop": _round(m.step_gflop, 3),
        "stitch_fraction_low": _round(m.stitch_interval and m.stitch_interval[0], 4),
        "stitch_fraction_high": _round(m.stitch_interval and m.stitch_interval[1], 4),
        "volume_padded": m.volume_padded, "sw_batch_best": "" if m.sw_batch_best is None else m.sw_batch_best,
        # gmacs: fvcore MACs of one sample's forward passes, and one sample is one volume: every window's
        "gmacs": _round(m.work.macs * passes / 1e9, 6) if m.work and passes else "",
    }


class RunStore:
    def __init__(self, run_dir: Path, create: bool = True):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        if create:
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

    def note(self, **facts) -> None:
        """Add facts learnt during the run (e.g. the measured peaks) to this attempt's record."""
        path = self.run_dir / "environment.json"
        record = json.loads(path.read_text())
        latest = record["resumed"][-1] if record.get("resumed") else record
        latest.update(facts)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def first_record(self) -> dict:
        path = self.run_dir / "environment.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def resume_conflicts(self, env: dict, options: dict) -> list[str]:
        """What differs between this attempt and the run's first one, in the facts that make rows comparable."""
        first = self.first_record()
        before_env, before_options = first.get("environment", {}), first.get("options", {})
        conflicts = [f"{key}: {before_options[key]!r} then, {options[key]!r} now" for key in RESUME_MUST_MATCH
                     if key in before_options and key in options and before_options[key] != options[key]]
        conflicts += [f"{key}: {before_env[key]!r} then, {env[key]!r} now" for key in ENV_MUST_MATCH
                      if key in before_env and key in env and before_env[key] != env[key]]
        return conflicts

    def prepare_resume(self) -> tuple[str, list[str]]:
        """Make the folder safe to append to: cut a torn last CSV record, take out rows that were not valid
        measurements (a failed step, a non-finite output, no settled warm-up: measured again; refusals
        stay), and drop details lines of configurations without a row. Returns the torn text (empty when
        there was none) and the labels of the rows taken out."""
        torn = drop_torn_tail(self.csv_path) if self.csv_path.exists() else ""
        again: list[str] = []
        if self.csv_path.exists():
            contents = read_rows(self.csv_path)
            again = [f"{r['model']} {r['input_shape']} b{r['batch']} {r['mode']}: {r.get('error') or 'not warm'}"
                     for r in contents.rows if not is_final(r)]
            if again:
                kept = [r for r in contents.rows if is_final(r)]
                _atomic_write(self.csv_path, _csv_text(contents.header, kept))
        if self.details_path.exists():
            done = self.completed_keys()
            kept = []
            for line in self.details_path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn by the interruption
                spec = record.get("spec", {})
                if BenchSpec.from_record(spec).key in done:
                    kept.append(line)
            _atomic_write(self.details_path, "".join(line + "\n" for line in kept))
        return torn, again

    def completed_keys(self) -> set[tuple]:
        """Configurations this run need not measure again (see ``schema.is_final``)."""
        if not self.csv_path.exists():
            return set()
        return {row_key(row) for row in read_rows(self.csv_path).rows if is_final(row)}

    def append(self, m: Measurement, env: dict) -> dict:
        row = to_row(m, env, self.run_id)
        with self.details_path.open("a") as handle:
            handle.write(json.dumps(details(m), sort_keys=True) + "\n")
        new_file = not self.csv_path.exists()
        # A run written by an older harness keeps its own header: its new rows fill those columns only.
        header = RESULT_COLUMNS if new_file else read_rows(self.csv_path).header
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
            os.fsync(handle.fileno())
        return row


def _csv_text(header: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, newline="")
    os.replace(temporary, path)


def details(m: Measurement) -> dict:
    """Everything raw about one row: the samples and, when counted, the per-operator breakdown."""
    work = m.work
    return {
        "spec": m.spec.record(),
        "latency_s": list(m.latency_s),
        "block_s": list(m.block_s),
        "block_steps": m.block_steps,
        "setup_s": m.setup_s,
        "warmup_steps": m.warmup_steps,
        "warmup_settled": m.warmup_settled,
        "step_flop": m.step_flop,
        "macs_by_operator": work.macs_by_operator if work else {},
        "zero_mac_ops": work.zero_mac_ops if work else {},
        "unsupported_ops": work.unsupported_ops if work else {},
        "uncalled_modules": list(work.uncalled_modules) if work else [],
        "error": m.error,
        # Whole volumes: the windows' own forward passes back to back (s per volume); MACs above are per window.
        **({"forward_s": list(m.forward_s), "windows": m.windows, "forward_passes": m.forward_passes,
            "sw_batch_best": m.sw_batch_best} if m.spec.mode == VOLUME_MODE else {}),
        # Loader-fed training rows: the seconds of each throughput block spent waiting for data.
        **({"wait_s": list(m.wait_s)} if m.wait_s else {}),
    }
