"""``python -m harness bench --processes K``: the sweep K times, each in a fresh process, as sub-runs of one
run folder; then the run's own ``results.csv``, ``details.jsonl`` and ``environment.json`` pooled from them.

Why: a process can be a few percent faster or slower than the next for its whole life (memory layout,
thread placement, clocks, what else the machine runs), which no interval from one process's samples can
see. ``compare`` (docs/compare.md) takes the process as the unit of noise: with K >= 2 processes a run
measures its own between-process spread, and compare's interval follows it.

Layout of ``RUN_DIR`` (``--runs-root``/``--run-id``, defaults as for a plain bench):

- ``processes/p0`` .. ``processes/p<K-1>``: each a normal run folder, written by ``python -m harness bench
  ... --runs-root RUN_DIR/processes --run-id p<i>`` in a subprocess of its own, one after the other;
- ``results.csv``: one row per configuration. A configuration that failed (or was refused, or did not
  settle) in any process takes that process's row: it is not a measurement. Otherwise the first process's
  row with the timing columns derived from the pooled samples (the same formulas as one process's) and the
  largest peak memory;
- ``details.jsonl``: the first process's record with the samples pooled (``block_s`` scaled to its
  ``block_steps``, since each process calibrates its own block length) and ``processes``: each process's
  raw ``latency_s``, ``block_s``, ``block_steps`` (and ``forward_s`` for volumes), in process order;
- ``environment.json``: the first process's record, plus ``processes`` (each sub-run's id, exit status and
  wall time) and ``between_process_sd`` (per measure: the pooled standard deviation of log process medians
  over the configurations, with its degrees of freedom: the run's own measured noise floor).

Exit status: the first process's failure to start (2 for bad options, or any status other than 0 and 1)
stops the rest and is returned; else 1 when any process found something (its status 1) or a
configuration is missing from some process, 0 otherwise. ``--resume RUN_ID`` resumes each process that
exists and starts the missing ones, then pools again.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from harness.bench.spec import NO_LOADER, BenchSpec, Measurement
from harness.options import EXIT_USAGE, OptionError, report as report_option_error, require_new_run, require_positive
from harness.stats import process_medians, robust_pooled_sd
from harness.store.load import raw_samples, read_run
from harness.store.schema import RUNS_ROOT, loader_columns, measured_fine

PROCESSES_DIR = "processes"
OPTION = "--processes"
# The timing columns of a row, derived from the samples (harness.bench.spec.Measurement's properties).
TIMING_COLUMNS = ("latency_ms", "latency_iqr_ms", "latency_p90_ms", "step_ms", "samples_per_s", "achieved_tflops",
                  "mfu")
VOLUME_TIMING_COLUMNS = ("volume_s", "volume_iqr_s", "volumes_per_s", "mvox_per_s", "stitch_fraction")
DIGITS = {"volume_s": 6, "volume_iqr_s": 6, "volumes_per_s": 6, "mvox_per_s": 5, "achieved_tflops": 5, "mfu": 5}


def _take(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``name VALUE`` or ``name=VALUE`` (the last one given), and argv without it."""
    value, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == name:
            if i + 1 >= len(argv):
                raise OptionError(f"{name} needs a value. Way out: e.g. {name} 3.")
            value, i = argv[i + 1], i + 2
            continue
        if arg.startswith(name + "="):
            value = arg[len(name) + 1:]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def processes_from(argv: list[str]) -> tuple[int, list[str]]:
    """``--processes K`` (default: the profile's, ``default_processes``) and the other arguments; OptionError
    for a value that is not an integer of at least 1."""
    value, rest = _take(list(argv), OPTION)
    if value is None:
        return default_processes(rest), rest
    try:
        k = int(value)
    except ValueError:
        k = value
    require_positive(OPTION, k)
    return k, rest


def _device(argv: list[str]) -> str:
    device, _ = _take(argv, "--device")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _profile_name(argv: list[str]) -> str:
    from harness.bench.profiles import default_profile

    profile, _ = _take(argv, "--profile")
    return profile or default_profile(_device(argv))


def default_processes(argv: list[str]) -> int:
    """How many processes a bench without ``--processes`` runs: the profile's ``processes``
    (harness.bench.profiles), except 1 for one shard of a launched sweep (``--shard``: the launcher spreads
    the configurations, harness.launch) and for pytest's collection-only runs; on ``--resume RUN`` the
    processes the run already has (1 for a run of one process). An unknown profile gives 1: the sweep
    itself then refuses it, with the list of profiles."""
    from harness.bench.profiles import PROFILES

    if any(a in ("--collect-only", "--co") or a == "--shard" or a.startswith("--shard=") for a in argv):
        return 1
    resume, _ = _take(argv, "--resume")
    if resume:
        root, _ = _take(argv, "--runs-root")
        folder = (Path(root) if root else RUNS_ROOT) / resume / PROCESSES_DIR
        return len(list(folder.glob("p*"))) if folder.is_dir() else 1
    profile = PROFILES.get(_profile_name(argv))
    return profile.processes if profile else 1


def split_processes(argv: list[str], show: Callable[[Path], None] | None = None) -> tuple[int | None, list[str]]:
    """The hook for ``python -m harness bench``: with K > 1 processes (``--processes K``, or the profile's
    default) run the K processes here and return (their exit status, argv without the option); with K = 1,
    (None, argv without it) for the caller to run the one sweep itself; a bad value is reported: (2, argv)."""
    try:
        k, rest = processes_from(argv)
    except OptionError as error:
        return report_option_error(error), list(argv)
    return (run_processes(rest, k, show) if k > 1 else None), rest


def _default_run_id(argv: list[str]) -> str:
    from harness.store.run_store import new_run_id

    return new_run_id(_device(argv), _profile_name(argv))


def _run_dir(argv: list[str]) -> tuple[Path, bool, list[str]]:
    """The run folder, whether it is resumed, and argv without --runs-root, --run-id and --resume."""
    root, argv = _take(argv, "--runs-root")
    run_id, argv = _take(argv, "--run-id")
    resume, argv = _take(argv, "--resume")
    runs_root = Path(root) if root else RUNS_ROOT
    if resume and run_id:
        raise OptionError("--run-id and --resume both given. Way out: --resume RUN_ID alone continues that run.")
    if resume:
        folder = runs_root / resume
        if not (folder / PROCESSES_DIR).is_dir():
            raise OptionError(f"--resume {resume!r} {OPTION}: {folder} holds no {PROCESSES_DIR}/ folder, so it is not "
                              f"a run of several processes. Way out: resume it without {OPTION}, or give a run made "
                              f"with {OPTION}.")
        return folder, True, argv
    run_id = run_id or _default_run_id(argv)
    require_new_run(runs_root, run_id)
    return runs_root / run_id, False, argv


def run_processes(argv: list[str], k: int, show: Callable[[Path], None] | None = None) -> int:
    """Run the bench sweep of ``argv`` (``python -m harness bench`` arguments, without ``--processes``) in
    ``k`` fresh processes as sub-runs of one run folder, then pool them (module docstring) and ``show`` the
    pooled run folder (the bench prints its table). The exit status."""
    try:
        require_positive(OPTION, k)
        run_dir, resumed, argv = _run_dir(list(argv))
    except OptionError as error:
        return report_option_error(error)
    processes = run_dir / PROCESSES_DIR
    processes.mkdir(parents=True, exist_ok=True)
    statuses, walls = [], []
    for i in range(k):
        name = f"p{i}"
        again = resumed and (processes / name).is_dir()
        command = [sys.executable, "-m", "harness", "bench", *argv, OPTION, "1", "--runs-root", str(processes),
                   *(("--resume", name) if again else ("--run-id", name))]
        print(f"[process {i + 1}/{k}] {'resuming' if again else 'measuring'} {processes / name}", flush=True)
        started = time.monotonic()
        status = subprocess.run(command).returncode
        walls.append(round(time.monotonic() - started, 1))
        if status == EXIT_USAGE and i == 0 and not resumed:
            shutil.rmtree(run_dir, ignore_errors=True)  # refused before measuring: no run to resume
            return status
        if status not in (0, 1):
            print(f"process {i + 1}/{k} ({processes / name}) exited {status}; the remaining processes were not "
                  f"started and nothing was pooled. Way out: fix what it reported, then `python -m harness bench "
                  f"--resume {run_dir.name} --runs-root {run_dir.parent} {OPTION} {k}` (with the same options).",
                  file=sys.stderr)
            return status
        statuses.append(status)
    problems = pool(run_dir, [processes / f"p{i}" for i in range(k)], statuses, walls)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if show:
        show(run_dir)
    print(f"{k} processes pooled into {run_dir} (sweep wall times {', '.join(f'{w:g} s' for w in walls)})")
    return 1 if any(statuses) or problems else 0


# --- pooling -------------------------------------------------------------------------------------------

def _number(value, digits: int = 4):
    return "" if value is None else round(value, digits)


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _process_samples(record: dict) -> dict:
    return {"latency_s": list(record.get("latency_s") or []), "block_s": list(record.get("block_s") or []),
            "block_steps": record.get("block_steps") or 0,
            **({"forward_s": list(record["forward_s"])} if "forward_s" in record else {})}


def _pooled_kind(row: dict) -> bool:
    """A row whose samples are pooled: a measurement (schema.measured_fine), or one timed without warm-up
    because its options asked for none (the smoke profile). Anything else (an error, a refusal, a warm-up
    that never settled) is not a measurement, in any process."""
    return not row.get("error") and (measured_fine(row) or str(row.get("warmup", "")) in ("0", ""))


def pooled_record(records: list[dict], names: list[str]) -> dict:
    """One details record from the same configuration's records of several processes (module docstring)."""
    first = records[0]
    steps = first.get("block_steps") or 0
    blocks = [block * steps / record["block_steps"] for record in records if record.get("block_steps")
              for block in record.get("block_s") or []] if steps else []
    pooled = {**first, "latency_s": [t for r in records for t in r.get("latency_s") or []], "block_s": blocks,
              "processes": [{"run_id": name, **_process_samples(r)} for name, r in zip(names, records)]}
    if "forward_s" in first:
        pooled["forward_s"] = [t for r in records for t in r.get("forward_s") or []]
    if "wait_s" in first:  # loader-fed rows: each block's wait, scaled as its block
        pooled["wait_s"] = [w * steps / r["block_steps"] for r in records if r.get("block_steps")
                            for w in r.get("wait_s") or []] if steps else []
    return pooled


def pooled_row(rows: list[dict], record: dict, run_id: str) -> dict:
    """The first process's row with the timing columns derived from the pooled samples of ``record``."""
    row = dict(rows[0])
    spec = BenchSpec.from_record(record["spec"])
    m = Measurement(spec, latency_s=tuple(record["latency_s"]), block_s=tuple(record["block_s"]),
                    block_steps=record.get("block_steps") or 0, step_flop=record.get("step_flop"),
                    peak_tflops=_float(row.get("peak_tflops")), forward_s=tuple(record.get("forward_s") or ()),
                    wait_s=tuple(record.get("wait_s") or ()))
    for column in TIMING_COLUMNS + (VOLUME_TIMING_COLUMNS if row.get("mode") == "volume" else ()):
        if column in row:
            row[column] = _number(getattr(m, column), DIGITS.get(column, 4))
    if spec.loader != NO_LOADER:
        row.update(loader_columns(m))  # the data-wait share from the pooled waits
    peaks = [p for p in (_float(r.get("peak_mem_mb")) for r in rows) if p is not None]
    if peaks and "peak_mem_mb" in row:
        row["peak_mem_mb"] = round(max(peaks), 1)
    row["run_id"] = run_id
    return row


def between_process_sd(details: dict) -> dict:
    """Per measure, the spread of log process medians over the run's configurations (robust_pooled_sd: the
    spread compare uses)."""
    groups = {"throughput": [], "latency": []}
    for record in details.values():
        processes = [raw_samples(p) for p in record.get("processes", [])]
        groups["throughput"].append(process_medians([p["step_s"] for p in processes]))
        groups["latency"].append(process_medians([p["latency_s"] for p in processes]))
    return {measure: dict(zip(("sd", "df"), robust_pooled_sd(values))) for measure, values in groups.items()}


def pool(run_dir: Path, folders: list[Path], statuses: list[int] | None = None,
         walls: list[float] | None = None) -> list[str]:
    """Write the run's results.csv, details.jsonl and environment.json from its processes' folders; return
    the problems found (a configuration missing from some process; dropped lines)."""
    runs = [read_run(folder) for folder in folders]
    names = [folder.name for folder in folders]
    problems = [warning for run in runs for warning in run.warnings]
    header = list(dict.fromkeys(column for run in runs for column in run.header))
    keyed = [dict(run.keyed()) for run in runs]  # the last row of a key wins (a resumed process)
    keys = list(dict.fromkeys(key for rows in keyed for key in rows))
    out_rows, out_details = [], {}
    for key in keys:
        present = [i for i, rows in enumerate(keyed) if key in rows]
        rows = [keyed[i][key] for i in present]
        if len(present) < len(runs):
            missing = ", ".join(names[i] for i in range(len(runs)) if i not in present)
            problems.append(f"{rows[0]['model']} {rows[0]['input_shape']} b{rows[0]['batch']} {rows[0]['mode']}: no "
                            f"row in process(es) {missing}; pooled from the others")
        failed = next((row for row in rows if not _pooled_kind(row)), None)
        records = [runs[i].details.get(key) for i in present]
        if failed is not None or any(r is None for r in records):
            chosen = failed if failed is not None else rows[0]
            out_rows.append({**chosen, "run_id": run_dir.name})
            source = present[rows.index(chosen)]
            if key in runs[source].details:
                out_details[key] = runs[source].details[key]
            continue
        out_details[key] = pooled_record(records, [names[i] for i in present])
        out_rows.append(pooled_row(rows, out_details[key], run_dir.name))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(out_rows)
    _write(run_dir / "details.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in out_details.values()))
    first = runs[0].record if runs else {}
    environment = {**first, "options": {**first.get("options", {}), "processes": len(folders)},
                   "processes": [{"run_id": name, "path": f"{PROCESSES_DIR}/{name}",
                                  "exit_status": None if statuses is None else statuses[i],
                                  "wall_s": None if walls is None else walls[i]} for i, name in enumerate(names)],
                   "between_process_sd": between_process_sd(out_details)}
    _write(run_dir / "environment.json", json.dumps(environment, indent=2, sort_keys=True) + "\n")
    _write(run_dir / "results.csv", text.getvalue())  # last: a folder with results.csv is a complete run
    return problems


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def main(argv=None) -> int:
    """``python -m harness.launch.repeats --processes K [bench options]``."""
    try:
        k, rest = processes_from(sys.argv[1:] if argv is None else list(argv))
    except OptionError as error:
        return report_option_error(error)
    return run_processes(rest, k)


if __name__ == "__main__":
    raise SystemExit(main())
