"""One shard as one process, the unit both launchers run: the local pool directly, submitit as the body
of a SLURM (or local) array task. Kept to plain data and a module-level function so submitit can pickle it."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ShardJob:
    index: int
    argv: tuple[str, ...]
    cwd: str
    log: str
    env: dict = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES, set before the shard imports torch


def run_shard(job: ShardJob) -> int:
    """Run the shard to its end, output appended to its log; its exit status (negative: killed by a signal)."""
    env = {**os.environ, **job.env}
    with open(job.log, "ab") as log:
        log.write(f"$ {' '.join(job.argv)}\n".encode())
        log.flush()
        return subprocess.run(list(job.argv), cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
