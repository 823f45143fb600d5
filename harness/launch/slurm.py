"""The cluster launcher: the pending shards as one SLURM job array through submitit's AutoExecutor, or, with
``local=True``, the same array through submitit's local executor (a laptop, CI). Each array task runs
``job.run_shard``; SLURM pins the task's GPU with CUDA_VISIBLE_DEVICES.

What a task asks for fits the partition it meets: CPUs and GPUs per task default from what ``sinfo`` says
the partition's nodes have, and a request no node of the partition can meet is refused before anything is
submitted (``partition_offer``, ``resolve_request``).

On SLURM the launcher follows the array with ``squeue`` (which lists finished tasks too, for MinJobAge),
not with submitit's own polling: that calls ``sacct``, which fails on clusters without accounting
(slurmdbd), warns on every poll, and never sees a task that ended without a result (cancelled, timed out,
node failure) end. Each task's end is recorded with the scheduler's state, so a cancelled task is reported
as cancelled, and resumed like any unfinished shard.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from harness.options import OptionError
from harness.launch.job import ShardJob, run_shard
from harness.launch.plan import REPO_ROOT, SweepPlan


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


# ---- what the partition offers (sinfo) ------------------------------------------------------------------

SINFO_COMMAND = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%G"]


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    gpus: int


@dataclass(frozen=True)
class PartitionOffer:
    name: str
    nodes: tuple[Node, ...]
    others: tuple[str, ...] = ()  # the cluster's other partitions, for messages

    def describe(self) -> str:
        kinds: dict[tuple[int, int], list[str]] = {}
        for node in self.nodes:
            kinds.setdefault((node.cpus, node.gpus), []).append(node.name)
        ordered = sorted(kinds.items(), key=lambda kind: (-kind[0][1], -kind[0][0]))
        return "; ".join(f"{len(names)} node(s) with {cpus} CPUs and {gpus} GPU(s)"
                         + (f" ({names[0]})" if len(names) == 1 else "") for (cpus, gpus), names in ordered)


def gres_gpus(gres: str) -> int:
    """GPUs in a node's GRES as sinfo prints it: ``(null)``, ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:a100:2,gpu:v100:2``,
    ``gpu:1g.10gb:7`` (MIG), ``gpu`` (one); other resources (``mps:200``, ``shard:8``) are not GPUs."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres or ""):
        item = re.sub(r"\(.*\)$", "", item.strip())
        fields = item.split(":")
        if fields[0] != "gpu":
            continue
        count = fields[-1] if len(fields) > 1 else "1"
        match = re.fullmatch(r"(\d+)([KMG]?)", count)
        if match is None:  # gpu:a100 (a type without a count): one
            total += 1
        else:
            total += int(match.group(1)) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[match.group(2)]
    return total


def parse_sinfo(text: str) -> tuple[dict[str, list[Node]], str | None]:
    """``SINFO_COMMAND``'s output -> (nodes of each partition, the default partition or None)."""
    partitions: dict[str, list[Node]] = {}
    default = None
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 4:
            raise ValueError(f"unexpected sinfo line {line!r}")
        name, partition, cpus, gres = fields
        if partition.endswith("*"):
            partition = partition[:-1]
            default = partition
        nodes = partitions.setdefault(partition, [])
        if not any(n.name == name for n in nodes):
            nodes.append(Node(name, int(cpus.rstrip("+")), gres_gpus(gres)))
    return partitions, default


def read_sinfo() -> str:
    try:
        done = subprocess.run(SINFO_COMMAND, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise OptionError(f"--launcher slurm could not ask the cluster what its partitions offer ({' '.join(SINFO_COMMAND)}: "
                          f"{error}). Way out: run it where sinfo reaches the SLURM controller (the login node), "
                          f"or use --launcher local.") from None
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise OptionError(f"--launcher slurm could not ask the cluster what its partitions offer ({' '.join(SINFO_COMMAND)}: "
                          f"{reason}). Way out: check that the SLURM controller is up and reachable from here "
                          f"(sinfo, SLURM_CONF), or use --launcher local.")
    return done.stdout


def partition_offer(partition: str | None, sinfo_text: str | None = None) -> PartitionOffer:
    """The nodes of ``partition`` (None: the cluster's default partition), from sinfo."""
    partitions, default = parse_sinfo(read_sinfo() if sinfo_text is None else sinfo_text)
    listed = ", ".join(f"{p}{' (default)' if p == default else ''}" for p in partitions) or "none"
    name = partition or default
    if name is None:
        raise OptionError(f"--launcher slurm: this cluster has no default partition (partitions: {listed}). "
                          f"Way out: choose one with --partition.")
    if name not in partitions:
        raise OptionError(f"--partition {name}: sinfo lists no such partition here (partitions: {listed}). Way out: "
                          f"give one of those.")
    return PartitionOffer(name, tuple(partitions[name]), tuple(p for p in partitions if p != name))


def _share(node: Node, gpus_per_task: int) -> int:
    """A task's fair share of a node's CPUs: the CPUs that go with its GPUs (with none, with one GPU slot);
    the whole node where the node has no GPU."""
    return max(1, node.cpus * max(gpus_per_task, 1) // max(node.gpus, 1))


def resolve_request(offer: PartitionOffer, gpus_per_task: int | None, cpus_per_task: int | None) -> tuple[int, int]:
    """(GPUs, CPUs) per array task: the values given, the rest defaulted from the partition's nodes.

    GPUs default to 1 where some node has a GPU, else 0. CPUs default to the smallest share (``_share``) over
    the nodes that have those GPUs, so the default fits on every such node. A request that no node of the
    partition can meet (one task is one node) is an OptionError saying what the partition offers."""
    gpus = gpus_per_task if gpus_per_task is not None else (1 if any(n.gpus for n in offer.nodes) else 0)
    hosts = [n for n in offer.nodes if n.gpus >= gpus]
    cpus = cpus_per_task if cpus_per_task is not None else (min(_share(n, gpus) for n in hosts) if hosts else 1)
    if not any(n.gpus >= gpus and n.cpus >= cpus for n in offer.nodes):
        most_gpus = max((n.gpus for n in offer.nodes), default=0)
        most_cpus = max((n.cpus for n in (hosts or offer.nodes)), default=0)
        fits = (f"at most {most_cpus} CPUs per task with {gpus} GPU(s)" if hosts else
                f"at most {most_gpus} GPU(s) per task")
        others = f", or another --partition ({', '.join(offer.others)})" if offer.others else ""
        raise OptionError(f"--gpus-per-task {gpus} --cpus-per-task {cpus}: no node of partition {offer.name} has that "
                          f"many (it offers {offer.describe() or 'no nodes'}), so the array would never start. Way out: "
                          f"ask for {fits}{others}.")
    return gpus, cpus


# ---- the array ------------------------------------------------------------------------------------------

def executor(plan: SweepPlan, settings: ClusterSettings, local: bool):
    import submitit

    # The array tasks import harness.launch.job: make the repository importable wherever they start (sbatch
    # passes the submitting environment on; the tasks run this same interpreter, sys.executable).
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO_ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *paths])
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


# Scheduler states of a task that has ended (squeue's %T, sacct's State); any other state is still going.
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "REVOKED", "SPECIAL_EXIT", "TIMEOUT"}
ENDINGS = {"CANCELLED": "was cancelled", "TIMEOUT": "reached its time limit (--time)", "NODE_FAIL": "lost its node",
           "OUT_OF_MEMORY": "ran out of memory", "PREEMPTED": "was preempted", "BOOT_FAIL": "never booted its node",
           "DEADLINE": "passed its deadline", "FAILED": "failed", "UNKNOWN": "ended in a state the scheduler no "
           "longer knows"}


def parse_states(text: str) -> dict[str, str]:
    """``squeue -r -o %i|%T`` or ``sacct -P -o JobID,State`` lines -> {"123_4": "RUNNING"}; "CANCELLED by 0" -> CANCELLED."""
    states = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        task, state = (part.strip() for part in line.split("|", 1))
        if task and "." not in task and state:  # job steps (123_4.batch) are not tasks
            states[task] = state.split()[0].rstrip("+").upper()
    return states


def squeue_states(array_ids: list[str], run=subprocess.run) -> dict[str, str] | None:
    """The state of every task of these arrays that the controller still lists (finished ones too, until
    MinJobAge); None when squeue could not answer."""
    try:
        done = run(["squeue", "--noheader", "--array", "--states=all", "--jobs", ",".join(array_ids),
                    "--format=%i|%T"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return {} if "invalid job id" in (done.stderr + done.stdout).lower() else None
    return parse_states(done.stdout)


def sacct_states(array_ids: list[str], run=subprocess.run) -> dict[str, str]:
    """The accounting's states, for tasks the controller no longer lists; {} without accounting."""
    try:
        done = run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                    *(f"--jobs={a}" for a in array_ids)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_states(done.stdout) if done.returncode == 0 else {}


def follow_array(jobs: list, squeue=squeue_states, sacct=sacct_states, clock=time.monotonic, sleep=time.sleep,
                 progress=print, grace_s: float = 15.0) -> dict[str, str]:
    """Wait until every array task (submitit jobs: ``job_id``, ``paths.result_pickle``) has ended; the
    scheduler's final state of each (``UNKNOWN`` for a task that left no trace).

    A task has ended when the scheduler says so (squeue; sacct for one the controller has forgotten). A
    result file alone is not the end: a cancelled task writes one too (its shard killed by SIGTERM), so the
    scheduler's word is awaited for ``4 * grace_s`` more. A task the scheduler calls COMPLETED, or that it no
    longer lists, gets ``grace_s`` for its result file to appear (shared filesystems lag). Polls the files every
    second and the scheduler every 2 s at first, then less often (30 s after about ten minutes)."""
    arrays = sorted({job.job_id.split("_")[0] for job in jobs})
    start = clock()
    ended: dict[str, str] = {}
    states: dict[str, str] = {}
    waiting_since: dict[str, float] = {}  # task -> when it got a result file, or was last seen ended/gone
    next_query = start
    complained = False
    while len(ended) < len(jobs):
        now = clock()
        active = [job for job in jobs if job.job_id not in ended]
        for job in active:
            if job.job_id not in waiting_since and job.paths.result_pickle.exists():
                waiting_since[job.job_id] = now
                next_query = min(next_query, now)  # ask the scheduler now how it ended
        if now >= next_query:
            answer = squeue(arrays)
            if answer is None:
                if not complained:
                    progress("squeue did not answer; still waiting for the array (retrying)")
                    complained = True
            else:
                gone = [job.job_id for job in active if job.job_id not in answer]
                if gone:
                    answer = {**answer, **{k: v for k, v in sacct(arrays).items() if k in gone}}
                for job in active:
                    states[job.job_id] = answer.get(job.job_id, "UNKNOWN" if job.job_id in gone else
                                                    states.get(job.job_id, ""))
            next_query = now + min(30.0, 2.0 + (now - start) / 20)
        for job in active:
            state = states.get(job.job_id, "")
            has_result = job.paths.result_pickle.exists()
            if state in ENDED - {"COMPLETED"}:
                ended[job.job_id] = state
            elif state in ("COMPLETED", "UNKNOWN"):
                since = waiting_since.setdefault(job.job_id, now)
                if has_result or now - since >= grace_s:
                    ended[job.job_id] = state
            elif has_result and now - waiting_since.get(job.job_id, now) >= 4 * grace_s:
                ended[job.job_id] = state or "UNKNOWN"  # the scheduler never said: trust the result
        if len(ended) < len(jobs):
            sleep(1.0)
    return ended


class _NoSacctNoise(logging.Filter):
    """submitit's own status polls (if anything triggers one) warn that sacct failed on every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "sacct error" not in record.getMessage()


def _returncode(job, index: int, plan: SweepPlan, progress) -> int | None:
    """The shard's exit status from the task's result file; None when there is none or the task raised."""
    import submitit

    try:
        return job.result()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as error:
        progress(f"shard {index}/{plan.shards}: array task {job.job_id} ended without finishing: "
                 f"{str(error).splitlines()[0]}")
        return None


def run_array(plan: SweepPlan, indices: list[int], settings: ClusterSettings, local: bool = False,
              progress=print) -> dict[int, int | None]:
    """Submit the shards as one array, wait for every task, record each exit status (None: the task died
    before its shard ended, e.g. the time limit or a node failure) and, on SLURM, the task and the
    scheduler's final state (``array_task``, ``scheduler_state`` in the manifest)."""
    plan.log_path(0).parent.mkdir(parents=True, exist_ok=True)
    jobs = [ShardJob(i, tuple(plan.shard_argv(i)), str(REPO_ROOT), str(plan.log_path(i))) for i in indices]
    submitted = executor(plan, settings, local).map_array(run_shard, jobs)
    progress(f"submitted {len(submitted)} array task(s): {', '.join(j.job_id for j in submitted)}")
    results = {}
    if local:
        for index, job in zip(indices, submitted):
            results[index] = _returncode(job, index, plan, progress)
            plan.record(index, results[index])
        return results
    noise = _NoSacctNoise()
    logging.getLogger("submitit").addFilter(noise)
    try:
        ends = follow_array(submitted, progress=progress)
        for index, job in zip(indices, submitted):
            state = ends[job.job_id]
            has_result = job.paths.result_pickle.exists()
            returncode = _returncode(job, index, plan, progress) if has_result else None
            if state != "COMPLETED":
                what = ENDINGS.get(state, f"ended in state {state}")
                finished = returncode in (0, 1)
                progress(f"shard {index}/{plan.shards}: array task {job.job_id} {what} (scheduler state {state}); "
                         + ("its shard had finished already" if finished else
                            f"its shard did not finish, resume the sweep to rerun it (log {plan.log_path(index)})"))
            elif not has_result:
                progress(f"shard {index}/{plan.shards}: array task {job.job_id} completed without a result file "
                         f"({job.paths.result_pickle}); counted as not finished")
            plan.record(index, returncode)
            plan.status[str(index)].update(array_task=job.job_id, scheduler_state=state)
            plan.save()
            results[index] = returncode
    finally:
        logging.getLogger("submitit").removeFilter(noise)
    return results
