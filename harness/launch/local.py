"""The local launcher: one worker process per visible GPU (or per CPU slot), each shard pinned with
``CUDA_VISIBLE_DEVICES`` in its environment, so the variable is set before the shard imports torch.
A plain process pool: shards queue for a free slot; no scheduler of our own."""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from harness.launch.job import ShardJob, run_shard
from harness.launch.plan import REPO_ROOT, SweepPlan


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def slots(device: str | None, workers: int | None, shards: int) -> list[dict]:
    """The environment of each worker slot: one GPU each, or (on CPU) one slot per worker."""
    gpus = [] if device == "cpu" else visible_gpus()
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus[:workers or len(gpus)]]
    count = workers or max(1, min(shards, os.cpu_count() or 1))
    return [{"CUDA_VISIBLE_DEVICES": ""} for _ in range(count)]


def run_local(plan: SweepPlan, indices: list[int], worker_slots: list[dict], progress=print) -> dict[int, int]:
    """Run the given shards, at most one per slot at a time; each exit status is recorded as it comes."""
    free: queue.Queue = queue.Queue()
    for slot in worker_slots:
        free.put(slot)
    lock = threading.Lock()

    def one(index: int) -> int:
        slot = free.get()
        try:
            progress(f"shard {index}/{plan.shards} started (CUDA_VISIBLE_DEVICES={slot['CUDA_VISIBLE_DEVICES']!r}, "
                     f"log {plan.log_path(index)})")
            job = ShardJob(index, tuple(plan.shard_argv(index)), str(REPO_ROOT), str(plan.log_path(index)), slot)
            returncode = run_shard(job)
        finally:
            free.put(slot)
        with lock:
            plan.record(index, returncode)
        return returncode

    plan.log_path(0).parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(worker_slots)) as pool:
        return dict(zip(indices, pool.map(one, indices)))
