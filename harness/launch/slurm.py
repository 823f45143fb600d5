"""The cluster launcher: the pending shards as one SLURM job array through submitit's AutoExecutor (one
GPU per array task), or, with ``local=True``, the same array through submitit's local executor (a laptop,
CI). Each array task runs ``job.run_shard``; SLURM pins the task's GPU with CUDA_VISIBLE_DEVICES."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from ..options import OptionError
from .job import ShardJob, run_shard
from .plan import REPO_ROOT, SweepPlan


@dataclass(frozen=True)
class ClusterSettings:
    partition: str | None = None
    time_min: int = 60
    account: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    parallelism: int | None = None  # most array tasks running at once (default: all)


def require_submitit(launcher: str) -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise OptionError(f"--launcher {launcher} needs submitit, which is not installed in this Python. Way out: "
                          f"pip install 'unet3d-bench[cluster]' (or pip install submitit), or use "
                          f"--launcher local.") from None
    if launcher == "slurm" and shutil.which("sbatch") is None:
        raise OptionError("--launcher slurm submits a SLURM job array, but there is no sbatch on this machine's "
                          "PATH. Way out: run it on the cluster's login node, or use --launcher submitit-local to "
                          "run the same array here, or --launcher local for this machine's GPUs.")


def executor(plan: SweepPlan, settings: ClusterSettings, local: bool):
    import submitit

    # The array tasks import harness.launch.job: make the repository importable wherever they start.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    ex = submitit.AutoExecutor(folder=plan.folder / "submitit", cluster="local" if local else "slurm")
    parameters = dict(name=plan.sweep_id, timeout_min=settings.time_min, gpus_per_node=settings.gpus_per_task,
                      cpus_per_task=settings.cpus_per_task, tasks_per_node=1, nodes=1,
                      slurm_array_parallelism=settings.parallelism or plan.shards)
    if settings.partition:
        parameters["slurm_partition"] = settings.partition
    if settings.account:
        parameters["slurm_account"] = settings.account
    ex.update_parameters(**parameters)
    return ex


def run_array(plan: SweepPlan, indices: list[int], settings: ClusterSettings, local: bool = False,
              progress=print) -> dict[int, int | None]:
    """Submit the shards as one array, wait for every task, record each exit status (None: the task died
    before its shard ended, e.g. the time limit or a node failure)."""
    import submitit

    plan.log_path(0).parent.mkdir(parents=True, exist_ok=True)
    jobs = [ShardJob(i, tuple(plan.shard_argv(i)), str(REPO_ROOT), str(plan.log_path(i))) for i in indices]
    submitted = executor(plan, settings, local).map_array(run_shard, jobs)
    progress(f"submitted {len(submitted)} array task(s): {', '.join(j.job_id for j in submitted)}")
    results = {}
    for index, job in zip(indices, submitted):
        try:
            returncode = job.result()
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as error:
            progress(f"shard {index}/{plan.shards}: array task {job.job_id} ended without finishing: "
                     f"{str(error).splitlines()[0]}")
            returncode = None
        plan.record(index, returncode)
        results[index] = returncode
    return results
