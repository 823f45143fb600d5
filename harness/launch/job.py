"""One shard as one process, the unit both launchers run: the local pool directly, submitit as the body
of a SLURM (or local) array task. Kept to plain data and a module-level function so submitit can pickle it."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ShardJob:
    index: int
    argv: tuple[str, ...]
    cwd: str
    log: str
    env: dict = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES, set before the shard imports torch


def slurm_task(env: dict) -> str:
    """Where a SLURM array task runs, for the shard's log ('' outside SLURM)."""
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if not job:
        return ""
    task = env.get("SLURM_ARRAY_TASK_ID")
    where = f"SLURM job {job}_{task} (array task {task})" if task else f"SLURM job {job}"
    return f"{where} on node {env.get('SLURMD_NODENAME') or os.uname().nodename}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_shard(job: ShardJob) -> int:
    """Run the shard to its end, output appended to its log; its exit status (negative: killed by a signal)."""
    env = {**os.environ, **job.env}
    with open(job.log, "ab") as log:
        log.write(f"$ {' '.join(job.argv)}\n".encode())
        task = slurm_task(env)
        if task:
            log.write(f"# {task}\n".encode())
        log.flush()
        returncode = subprocess.run(list(job.argv), cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if returncode < 0:  # e.g. SIGTERM from scancel or a time limit, SIGKILL from the OOM killer
            log.write(f"# the shard was killed by {_signal_name(-returncode)}\n".encode())
        return returncode
