"""Run a sweep's pending shards with the launcher its manifest names, then merge once every shard has
finished. Shared by ``python -m harness.launch`` and the simulated sweep of suites/launch_evidence.py."""
from __future__ import annotations

from dataclasses import dataclass

from harness.launch.local import run_local, slots
from harness.store.merge import MergeResult, merge
from harness.launch.plan import SweepPlan, describe_exit
from harness.launch.slurm import ClusterSettings, run_array


@dataclass(frozen=True)
class SweepOutcome:
    ran: tuple[int, ...]  # the shards this call started
    unfinished: tuple[int, ...]  # shards that did not run to their end, or (after the merge) lack planned rows
    merged: MergeResult | None  # None until every shard has run to its end


def run_pending(plan: SweepPlan, progress=print) -> dict:
    """Start the shards without a finished attempt; their exit statuses, as recorded in the manifest."""
    pending = plan.pending()
    settings = plan.launcher
    if not pending:
        return {}
    if settings["launcher"] == "local":
        return run_local(plan, pending, slots(settings.get("device"), settings.get("workers"), len(pending)), progress)
    cluster = ClusterSettings(**settings.get("cluster", {}))
    return run_array(plan, pending, cluster, local=settings["launcher"] == "submitit-local", progress=progress)


def run_sweep(plan: SweepPlan, allow_mixed_machines: bool = False, progress=print) -> SweepOutcome:
    ran = tuple(run_pending(plan, progress))
    for index in ran:
        progress(f"shard {index}/{plan.shards}: {describe_exit(plan.status[str(index)]['returncode'])} "
                 f"({plan.shard_run_id(index)})")
    unfinished = tuple(plan.pending())
    if unfinished:
        return SweepOutcome(ran, unfinished, None)
    folders = [plan.shard_folder(i) for i in range(plan.shards) if (plan.shard_folder(i) / "results.csv").is_file()]
    merged = merge(folders, plan.folder, allow_mixed_machines=allow_mixed_machines, expected_keys=plan.planned_keys())
    # A planned configuration with no row is a finding, and its shard is not finished: --resume measures it.
    unfinished = tuple(plan.mark_missing(list(merged.missing))) if merged.missing else ()
    return SweepOutcome(ran, unfinished, merged)
