"""Evidence that shard / merge / resume stay correct and cheap as a sweep grows, without a cluster.

A simulated sweep of fake configurations (a fake measurement, no torch work) goes through the real
machinery: ``SweepPlan`` and ``run_sweep`` with submitit's local executor (one array task per shard), the
run store (fsynced rows), a shard killed with SIGKILL mid-way (a node failure), ``--resume``-style
resubmission of only the unfinished shard, and the merge. Also times shard assignment alone, and
computes how a sweep's wall time scales with GPUs from a committed run's per-configuration times.

    python suites/launch_evidence.py                    # prints and writes results/launch/evidence.json
    python suites/launch_evidence.py --sizes 1200 --no-write
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.launch.plan import SweepPlan  # noqa: E402
from harness.launch.shards import assign, parse_shard, select  # noqa: E402
from harness.bench.spec import BenchSpec, Measurement  # noqa: E402
from harness.store.csvfile import read_rows  # noqa: E402
from harness.store.schema import RESULTS_ROOT, row_key  # noqa: E402
from harness.store.run_store import RunStore  # noqa: E402

FAKE_ENV = {"torch": "fake", "cuda": "", "device_name": "fake-gpu", "cpu": "fake-cpu", "threads": 1}


def fake_specs(count: int) -> list[BenchSpec]:
    """``count`` distinct configurations shaped like a real sweep's (models x shapes x batches x modes)."""
    return [BenchSpec(model=f"fake-{i // 24:04d}", input_shape=(1, 16 * (1 + i % 3), 16, 16), batch=1 + (i // 3) % 4,
                      mode=("inference", "train")[(i // 12) % 2]) for i in range(count)]


def shard_main(argv: list[str]) -> int:
    """One fake shard: the same flags as a pytest shard (--shard, --runs-root, --run-id/--resume)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, required=True)
    parser.add_argument("--die", default="", help="I:M: shard I kills itself after M rows, on its first attempt")
    parser.add_argument("--step-ms", type=float, default=0.0, help="fake measuring time per configuration")
    parser.add_argument("--shard", required=True)
    parser.add_argument("--runs-root", type=Path, required=True)
    parser.add_argument("--run-id")
    parser.add_argument("--resume")
    args = parser.parse_args(argv)
    index, count = parse_shard(args.shard)
    store = RunStore(args.runs_root / (args.resume or args.run_id))
    if args.resume:
        store.prepare_resume()
    done = store.completed_keys()
    store.write_environment(FAKE_ENV, shard=args.shard, resumed=bool(args.resume))
    die_index, die_after = (int(v) for v in args.die.split(":")) if args.die else (-1, 0)
    rng = random.Random(index)
    written = 0
    for spec in select(fake_specs(args.configs), index, count):
        if spec.key in done:
            continue
        time.sleep(args.step_ms / 1e3)
        sample = 1e-3 * (1 + 0.05 * rng.random())
        store.append(Measurement(spec, latency_s=(sample,), block_s=(sample,), block_steps=1, warmup_steps=1), FAKE_ENV)
        written += 1
        if index == die_index and not args.resume and written == die_after:
            os.kill(os.getpid(), signal.SIGKILL)  # a node failure, mid-shard
    return 0


def simulated_sweep(configs: int, shards: int, runs_root: Path, step_ms: float = 0.0) -> dict:
    """Run, kill one shard, resume, merge; check every configuration is there exactly once."""
    sweep = f"sim-{configs}"
    dying = shards - 1
    command = [str(REPO / "suites" / "launch_evidence.py"), "shard", "--configs", str(configs),
               "--die", f"{dying}:{configs // shards // 2}", "--step-ms", str(step_ms)]
    launcher = {"launcher": "submitit-local", "device": "cpu", "workers": None,
                "cluster": {"time_min": 30, "gpus_per_task": 0, "cpus_per_task": 1}}
    from harness.launch.sweep import run_sweep

    plan = SweepPlan(sweep, runs_root, shards, command, launcher)
    plan.save()
    quiet = lambda text: None  # noqa: E731
    started = time.perf_counter()
    first = run_sweep(plan, progress=quiet)
    first_s = time.perf_counter() - started
    rows_at_kill = len(read_rows(plan.shard_folder(dying) / "results.csv").rows)
    resumed_plan = SweepPlan.load(runs_root, sweep)  # what --resume reads
    started = time.perf_counter()
    second = run_sweep(resumed_plan, progress=quiet)
    resume_s = time.perf_counter() - started
    # The merge on its own, timed apart from the shards.
    from harness.store.merge import merge

    started = time.perf_counter()
    again = merge([plan.shard_folder(i) for i in range(shards)], runs_root / f"{sweep}-remerged")
    merge_s = time.perf_counter() - started
    keys = [row_key(row) for row in read_rows(plan.folder / "results.csv").rows]
    expected = {spec.key for spec in fake_specs(configs)}
    sizes = [len(select(fake_specs(configs), i, shards)) for i in range(shards)]
    details = (plan.folder / "details.jsonl").read_text().splitlines()
    return {
        "configurations": configs, "shards": shards, "shard_sizes_min_max": [min(sizes), max(sizes)],
        "killed_shard": dying, "unfinished_after_kill": list(first.unfinished), "rows_of_killed_shard_at_kill": rows_at_kill,
        "resubmitted_on_resume": list(second.ran), "merged_rows": len(keys), "duplicates": len(keys) - len(set(keys)),
        "same_configuration_set": set(keys) == expected, "details_lines": len(details), "remerged_rows": again.rows,
        "first_pass_s": round(first_s, 2), "resume_s": round(resume_s, 2), "merge_s": round(merge_s, 3),
    }


def assignment_timings(sizes=(1_000, 10_000, 100_000), shard_counts=(8, 64)) -> list[dict]:
    out = []
    for size in sizes:
        keys = [spec.key for spec in fake_specs(size)]
        for count in shard_counts:
            started = time.perf_counter()
            shard_of = assign(keys, count)
            elapsed = time.perf_counter() - started
            per = [list(shard_of.values()).count(i) for i in range(count)]
            out.append({"configurations": size, "shards": count, "assign_ms": round(1e3 * elapsed, 1),
                        "shard_sizes_min_max": [min(per), max(per)]})
    return out


def gpu_scaling(run: Path, startup_s: float, gpus=(1, 2, 4, 8, 16)) -> dict:
    """Computed, not measured: each configuration's wall time in a committed run (gaps between finished_at
    stamps), dealt to N shards as the launcher deals them; wall = the slowest shard + one shard's start-up."""
    rows = read_rows(run / "results.csv").rows
    stamps = [datetime.fromisoformat(row["finished_at"]) for row in rows]
    durations = {row_key(row): (b - a).total_seconds() for row, a, b in zip(rows[1:], stamps, stamps[1:])}
    total = sum(durations.values())
    table = []
    for n in gpus:
        shard_of = assign(durations, n)
        per_shard = [sum(d for k, d in durations.items() if shard_of[k] == i) for i in range(n)]
        wall = max(per_shard) + startup_s
        table.append({"gpus": n, "wall_s": round(wall, 1), "speedup": round((total + startup_s) / wall, 2),
                      "efficiency": round((total + startup_s) / wall / n, 2)})
    return {"source_run": run.name, "configurations": len(durations), "measuring_s": round(total, 1),
            "startup_s_per_shard": startup_s, "table": table}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_200, 10_000])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--startup-s", type=float, default=None, help="a shard's start-up (default: measured "
                        "import of torch and the harness in a fresh process)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        sweeps = [simulated_sweep(size, args.shards, Path(root)) for size in args.sizes]
    for sweep in sweeps:
        print(json.dumps(sweep))
        assert sweep["same_configuration_set"] and sweep["duplicates"] == 0 and sweep["resubmitted_on_resume"] == [
            sweep["killed_shard"]], sweep
    timings = assignment_timings()
    for timing in timings:
        print(json.dumps(timing))
    if args.startup_s is None:
        import subprocess

        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import harness.bench, harness.store.run_store"], cwd=REPO, check=True)
        args.startup_s = round(time.perf_counter() - started, 1)
    runs = sorted((RESULTS_ROOT / "runs").glob("*-cpu-cpu"))
    scaling = gpu_scaling(runs[-1], args.startup_s) if runs else {}
    print(json.dumps(scaling))
    if not args.no_write:
        out = RESULTS_ROOT / "launch" / "evidence.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": f"{os.cpu_count()} cores, loaded, no GPU", "simulated_sweeps": sweeps,
                  "assignment": timings, "computed_gpu_scaling": scaling,
                  "notes": "simulated sweeps: submitit LocalExecutor, fake measurements; scaling: computed"}
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "shard":
        sys.exit(shard_main(sys.argv[2:]))
    sys.exit(main())
