"""``python -m harness.launch``: a benchmark sweep split into shards, run on this machine's GPUs (or CPU
slots) or as a SLURM job array through submitit, then merged into one run. Options it does not know go
to every shard's pytest (``--profile``, ``--models``, ``--device``, ...).

    python -m harness.launch --launcher local --shards 4 --profile paper
    python -m harness.launch --launcher slurm --shards 16 --partition gpu --time 120 --account proj
    python -m harness.launch --resume SWEEP        # rerun only the shards that did not finish
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.options import (EXIT_FINDING, EXIT_NOTHING, EXIT_OK, OptionError, report, require_new_run,
                             require_positive)
from harness.store.schema import RUNS_ROOT
from harness.launch.local import slots
from harness.launch.plan import PLANNED_KEYS_ENV, REPO_ROOT, SweepPlan, describe_exit, pytest_command
from harness.launch.slurm import require_submitit
from harness.launch.sweep import run_sweep
from harness.store.merge import describe_key

LAUNCHERS = ("local", "slurm", "submitit-local")
OWNED = ("--shard", "--run-id", "--resume", "--runs-root")  # set per shard by the launcher


def _parser() -> argparse.ArgumentParser:
    from harness.options import EXIT_CODES_HELP

    parser = argparse.ArgumentParser(prog="python -m harness launch", description=__doc__, epilog=EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launcher", choices=LAUNCHERS, help="local (default): one process per GPU or CPU slot; "
                        "slurm: a job array through submitit; submitit-local: that array on this machine")
    parser.add_argument("--shards", type=int, help="how many shards (default: one per worker slot)")
    parser.add_argument("--workers", type=int, help="local: at most this many shards at once (default: one per "
                        "visible GPU, or per CPU core up to --shards)")
    parser.add_argument("--sweep", help="name of the sweep (default: time-sweep); shards go to SWEEP-shard-i-of-N")
    parser.add_argument("--resume", metavar="SWEEP", help="rerun the shards of SWEEP that did not finish, each from "
                        "the configurations it had not measured, then merge")
    parser.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"where runs go (default {RUNS_ROOT})")
    parser.add_argument("--allow-mixed-machines", action="store_true", help="merge shards measured on different "
                        "kinds of machine (refused otherwise)")
    cluster = parser.add_argument_group("slurm and submitit-local")
    cluster.add_argument("--partition", help="SLURM partition")
    cluster.add_argument("--time", type=int, help="time limit of each array task in minutes (default 60)")
    cluster.add_argument("--account", help="SLURM account")
    cluster.add_argument("--gpus-per-task", type=int, help="default 1 for slurm; 0 for submitit-local without GPU")
    cluster.add_argument("--cpus-per-task", type=int, help="default 8 for slurm; the cores over the shards locally")
    cluster.add_argument("--array-parallelism", type=int, help="most array tasks running at once (default: all)")
    return parser


def _value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _check_numbers(opts) -> None:
    for option in ("shards", "workers", "time", "cpus_per_task", "array_parallelism"):
        require_positive("--" + option.replace("_", "-"), getattr(opts, option))
    require_positive("--gpus-per-task", opts.gpus_per_task, allow_zero=True)


def check_pytest_args(pytest_args: list[str], runs_root: Path | None = None) -> list:
    """The shards' own option checks, run once up front (collection only, nothing measured or written), so a
    bad --models or --device stops the launch before any shard starts. Returns the plan: every configuration
    the sweep measures, [spec key, row key] each (``HARNESS_PLANNED_KEYS``), which the merge holds the
    shards' rows against."""
    owned = [a for a in pytest_args if a.split("=")[0] in OWNED]
    if owned:
        raise OptionError(f"{', '.join(owned)}: the launcher sets --shard, --run-id, --resume and --runs-root for "
                          f"each shard. Way out: name the sweep with --sweep, resume it with --resume SWEEP, and give "
                          f"--runs-root to the launcher.")
    with tempfile.TemporaryDirectory(prefix="harness-plan-") as folder:
        planned_file = Path(folder) / "planned.json"
        command = [sys.executable, *pytest_command(pytest_args), "--collect-only",
                   *(["--runs-root", str(runs_root)] if runs_root is not None else [])]
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                              env={**os.environ, PLANNED_KEYS_ENV: str(planned_file)})
        if done.returncode in (EXIT_NOTHING, 5):  # collected nothing: no configuration to measure
            raise OptionError(f"these options select no configuration to measure ({' '.join(pytest_args) or 'none'}). "
                              f"Way out: check --profile, --models and --model (`python -m harness list`).")
        if done.returncode in (2, 3, 4):
            lines = [line for line in (done.stderr + done.stdout).splitlines() if "error" in line.lower()]
            reason = (lines or [f"pytest exit status {done.returncode}"])[-1].strip()
            for prefix in ("Exit: ", "python -m pytest: ", "error: "):
                reason = reason.removeprefix(prefix)
            way_out = "" if "Way out" in reason else " Way out: see the benchmark options in the README (or pytest --help)."
            raise OptionError(f"the shards would refuse these options: {reason}{way_out}")
        return json.loads(planned_file.read_text()) if planned_file.is_file() else []


def _launcher_settings(opts, previous: dict, pytest_args: list[str]) -> dict:
    launcher = opts.launcher or previous.get("launcher", "local")
    if launcher != "local":
        require_submitit(launcher)
    device = _value(pytest_args, "--device")
    old_cluster = previous.get("cluster", {})
    partition = opts.partition or old_cluster.get("partition")
    gpus = opts.gpus_per_task if opts.gpus_per_task is not None else old_cluster.get("gpus_per_task")
    cpus = opts.cpus_per_task or old_cluster.get("cpus_per_task")
    if launcher == "slurm":
        from harness.launch.slurm import partition_offer, resolve_request

        # What the partition's nodes have (sinfo): the defaults, and a request no node can meet refused here.
        gpus, cpus = resolve_request(partition_offer(partition), 0 if gpus is None and device == "cpu" else gpus, cpus)
    else:
        local_cpu = launcher == "submitit-local" and (device == "cpu" or
                                                      not slots(device, None, 1)[0]["CUDA_VISIBLE_DEVICES"])
        gpus = gpus if gpus is not None else (0 if local_cpu else 1)
        cpus = cpus or (1 if local_cpu else 8)
    cluster = {
        "partition": partition,
        "time_min": opts.time or old_cluster.get("time_min", 60),
        "account": opts.account or old_cluster.get("account"),
        "gpus_per_task": gpus,
        "cpus_per_task": cpus,
        "parallelism": opts.array_parallelism or old_cluster.get("parallelism"),
    }
    return {"launcher": launcher, "device": device, "workers": opts.workers or previous.get("workers"),
            "cluster": cluster}


def _threads_per_shard(settings: dict, shards: int) -> int | None:
    """On CPU, shards share the cores: each gets its slice, recorded per row, instead of all fighting for all."""
    if settings["launcher"] == "slurm" or (settings["launcher"] == "submitit-local" and settings["cluster"]["gpus_per_task"]):
        return None
    worker_slots = slots(settings["device"], settings["workers"], shards)
    if worker_slots[0]["CUDA_VISIBLE_DEVICES"]:
        return None
    return max(1, (os.cpu_count() or 1) // len(worker_slots))


def plan_from(opts, pytest_args: list[str]) -> SweepPlan:
    """The plan of a new sweep, or of the sweep being resumed; every check done, nothing written yet."""
    _check_numbers(opts)
    if opts.resume:
        if pytest_args or opts.shards or opts.sweep:
            extra = " ".join(pytest_args + (["--shards"] if opts.shards else []) + (["--sweep"] if opts.sweep else []))
            raise OptionError(f"--resume {opts.resume!r} reuses the sweep's recorded shards and benchmark options, so "
                              f"{extra} cannot be given with it. Way out: leave them out (launcher settings such as "
                              f"--time or --launcher may change), or start a new sweep.")
        plan = SweepPlan.load(opts.runs_root, opts.resume)
        plan.launcher = _launcher_settings(opts, plan.launcher, plan.command)
        return plan
    settings = _launcher_settings(opts, {}, pytest_args)
    shards = opts.shards or len(slots(settings["device"], settings["workers"], os.cpu_count() or 1))
    sweep = opts.sweep or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-sweep"
    require_new_run(opts.runs_root, sweep)
    for index in range(shards):
        require_new_run(opts.runs_root, f"{sweep}-shard-{index}-of-{shards}")
    planned = check_pytest_args(pytest_args, opts.runs_root)
    threads = _threads_per_shard(settings, shards)
    if threads and _value(pytest_args, "--threads") is None:
        pytest_args = [*pytest_args, "--threads", str(threads)]
    return SweepPlan(sweep, opts.runs_root, shards, pytest_command(pytest_args), settings, planned=planned)


def main(argv=None) -> int:
    opts, pytest_args = _parser().parse_known_args(argv)
    try:
        plan = plan_from(opts, pytest_args)
    except OptionError as error:
        return report(error)
    plan.save()
    print(f"sweep {plan.sweep_id}: {plan.shards} shard(s) through the {plan.launcher['launcher']} launcher, "
          f"{len(plan.pending())} to run; manifest {plan.folder / 'launch.json'}", flush=True)
    try:
        outcome = run_sweep(plan, opts.allow_mixed_machines, progress=lambda text: print(text, flush=True))
    except OptionError as error:  # the merge refused (duplicates, mixed machines): the shards stay as they are
        return report(error)
    merged = outcome.merged
    if merged is None:  # a shard did not run to its end: nothing merged yet
        listed = ", ".join(f"{i} ({describe_exit(plan.status.get(str(i), {}).get('returncode'))})"
                           for i in outcome.unfinished)
        print(f"error: shard(s) {listed} did not finish; their logs are in {plan.folder / 'logs'}. Resume with: "
              f"python -m harness.launch --resume {plan.sweep_id} --runs-root {plan.runs_root}", file=sys.stderr)
        return EXIT_FINDING
    for warning in merged.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"merged {merged.runs} shard run(s) into {merged.folder}: {merged.rows} configuration(s)")
    if merged.missing:  # planned, and no row anywhere: lost, a finding; their shards run again on --resume
        print(f"error: {len(merged.missing)} planned configuration(s) have no row in any shard: "
              f"{'; '.join(describe_key(k) for k in merged.missing[:5])}{' ...' if len(merged.missing) > 5 else ''}. "
              f"Their shard(s) {', '.join(map(str, outcome.unfinished))} count as unfinished; measure them with: "
              f"python -m harness.launch --resume {plan.sweep_id} --runs-root {plan.runs_root}", file=sys.stderr)
    if merged.failed:
        print(f"error: {len(merged.failed)} configuration(s) failed to measure (error rows in "
              f"{merged.folder / 'results.csv'}): {'; '.join(merged.failed[:5])}"
              f"{' ...' if len(merged.failed) > 5 else ''}", file=sys.stderr)
    if merged.missing or merged.failed:
        return EXIT_FINDING
    if nothing_measured(merged.folder / "results.csv"):
        print(f"nothing to judge: no configuration of sweep {plan.sweep_id} was measured (every one was refused; "
              f"see the error column of {merged.folder / 'results.csv'})", file=sys.stderr)
        return EXIT_NOTHING
    return EXIT_OK


def nothing_measured(csv_path: Path) -> bool:
    """The merged run holds no measured row (every configuration refused)."""
    from harness.store.csvfile import read_rows

    return not csv_path.is_file() or not any(not row.get("error") for row in read_rows(csv_path).rows)

if __name__ == "__main__":
    sys.exit(main())
