"""--launcher slurm fits the partition it meets, without a cluster: sinfo's node lines (faked) give the default
CPUs and GPUs per task, a request no node can meet is refused before anything is written, and the array is
followed through the scheduler's states (a cancelled task is an end, not a wait without end). The real
scheduler path is `nox -s cluster`."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness.launch.__main__ as launch
from harness.launch import slurm
from harness.launch.slurm import (Node, PartitionOffer, follow_array, gres_gpus, parse_sinfo, parse_states,
                                  partition_offer, resolve_request)
from harness.options import OptionError

# sinfo --noheader --Node --format=%N|%P|%c|%G on a cluster with a GPU partition (default), a mixed one and a CPU one.
SINFO = """\
gpu01|gpu*|64|gpu:a100:8(S:0-1)
gpu02|gpu*|64|gpu:a100:8(S:0-1)
gpu01|all|64|gpu:a100:8(S:0-1)
old01|all|16|gpu:v100:2,mps:200
cpu01|all|128+|(null)
cpu01|cpu|128|(null)
cpu02|cpu|96|(null)
"""


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", 0), ("", 0), ("gpu:4", 4), ("gpu:a100:4", 4), ("gpu:a100:4(S:0-1)", 4), ("gpu:a100:2(S:0,1),gpu:v100:2", 4),
    ("gpu:1g.10gb:7", 7), ("gpu", 1), ("gpu:h100", 1), ("mps:200", 0), ("shard:8,gpu:2", 2), ("gpu:tesla:2(IDX:0-1)", 2),
])
def test_gpus_are_read_from_every_gres_form_sinfo_prints(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_sinfo_lines_give_each_partitions_nodes_and_the_default():
    partitions, default = parse_sinfo(SINFO)
    assert default == "gpu"
    assert partitions["gpu"] == [Node("gpu01", 64, 8), Node("gpu02", 64, 8)]
    assert partitions["all"] == [Node("gpu01", 64, 8), Node("old01", 16, 2), Node("cpu01", 128, 0)]
    assert partitions["cpu"] == [Node("cpu01", 128, 0), Node("cpu02", 96, 0)]
    with pytest.raises(ValueError, match="unexpected sinfo line"):
        parse_sinfo("gpu01 gpu 64 gpu:8\n")


def test_defaults_come_from_the_partition():
    gpu, mixed, cpu = (partition_offer(name, SINFO) for name in ("gpu", "all", "cpu"))
    assert resolve_request(gpu, None, None) == (1, 8)  # one GPU and the 64/8 CPUs that go with it
    assert resolve_request(gpu, 2, None) == (2, 16)
    assert resolve_request(gpu, 0, None) == (0, 8)  # a CPU task on a GPU node: one GPU slot's CPUs
    assert resolve_request(cpu, None, None) == (0, 96)  # no GPU anywhere: none asked, a whole node (the smallest)
    assert resolve_request(mixed, None, None) == (1, 8)  # fits gpu01 (64/8) and old01 (16/2) alike
    assert resolve_request(mixed, 4, None) == (4, 32)  # only gpu01 has 4 GPUs
    assert resolve_request(gpu, 1, 3) == (1, 3) and resolve_request(cpu, 0, 128) == (0, 128)  # given: kept
    assert partition_offer(None, SINFO).name == "gpu"  # no --partition: the default one


@pytest.mark.parametrize("partition, gpus, cpus, says", [
    ("gpu", 1, 65, "ask for at most 64 CPUs per task with 1 GPU(s)"),
    ("gpu", 9, None, "ask for at most 8 GPU(s) per task"),
    ("cpu", 1, 1, "ask for at most 0 GPU(s) per task"),
    ("cpu", 0, 129, "ask for at most 128 CPUs per task with 0 GPU(s)"),
    ("all", 4, 65, "ask for at most 64 CPUs per task with 4 GPU(s)"),
])
def test_a_request_no_node_can_meet_is_refused_with_what_the_partition_offers(partition, gpus, cpus, says):
    with pytest.raises(OptionError) as refused:
        resolve_request(partition_offer(partition, SINFO), gpus, cpus)
    message = str(refused.value)
    assert f"no node of partition {partition} has that many" in message and says in message and "Way out" in message
    assert "or another --partition" in message  # the other partitions are named


def test_the_offer_is_described_node_kind_by_node_kind():
    offer = partition_offer("all", SINFO)
    assert offer.describe() == ("1 node(s) with 64 CPUs and 8 GPU(s) (gpu01); 1 node(s) with 16 CPUs and 2 GPU(s) (old01); "
                                "1 node(s) with 128 CPUs and 0 GPU(s) (cpu01)")
    assert PartitionOffer("x", (Node("a", 4, 0), Node("b", 4, 0))).describe() == "2 node(s) with 4 CPUs and 0 GPU(s)"


def test_an_unknown_partition_or_no_default_is_refused():
    with pytest.raises(OptionError, match=r"--partition gpus: sinfo lists no such partition here \(partitions: gpu "
                                          r"\(default\), all, cpu\)"):
        partition_offer("gpus", SINFO)
    with pytest.raises(OptionError, match="no default partition .*choose one with --partition"):
        partition_offer(None, SINFO.replace("gpu*", "gpu"))


def _fake_sinfo(folder: Path, body: str) -> None:
    script = folder / "sinfo"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_sinfo_is_run_and_its_failure_is_an_option_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    _fake_sinfo(tmp_path, "printf 'n1|debug*|2|(null)\\n'")
    assert partition_offer(None) == PartitionOffer("debug", (Node("n1", 2, 0),))
    _fake_sinfo(tmp_path, "echo 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2; exit 1")
    with pytest.raises(OptionError, match="Unable to contact slurm controller.*Way out"):
        partition_offer(None)


def _slurm_launch(monkeypatch, sinfo_text: str) -> None:
    monkeypatch.setattr(launch, "require_submitit", lambda launcher: None)  # no submitit or sbatch needed here
    monkeypatch.setattr(slurm, "read_sinfo", lambda: sinfo_text)


def test_the_launcher_records_the_partitions_defaults(tmp_path, monkeypatch):
    _slurm_launch(monkeypatch, SINFO)
    opts, rest = launch._parser().parse_known_args(["--launcher", "slurm", "--shards", "2"])
    assert launch._launcher_settings(opts, {}, rest)["cluster"] == {
        "partition": None, "time_min": 60, "account": None, "gpus_per_task": 1, "cpus_per_task": 8, "parallelism": None}
    opts, rest = launch._parser().parse_known_args(["--launcher", "slurm", "--partition", "cpu", "--device", "cpu"])
    cluster = launch._launcher_settings(opts, {}, rest)["cluster"]
    assert (cluster["partition"], cluster["gpus_per_task"], cluster["cpus_per_task"]) == ("cpu", 0, 96)
    # --device cpu on a GPU partition asks for no GPU
    opts, rest = launch._parser().parse_known_args(["--launcher", "slurm", "--device", "cpu"])
    assert launch._launcher_settings(opts, {}, rest)["cluster"]["gpus_per_task"] == 0
    # a resume keeps what the sweep recorded, checked again against the partition it meets now
    previous = {"launcher": "slurm", "cluster": {"partition": "gpu", "gpus_per_task": 2, "cpus_per_task": 16}}
    opts, rest = launch._parser().parse_known_args(["--time", "30"])
    cluster = launch._launcher_settings(opts, previous, [])["cluster"]
    assert (cluster["gpus_per_task"], cluster["cpus_per_task"], cluster["time_min"]) == (2, 16, 30)
    opts, rest = launch._parser().parse_known_args(["--partition", "cpu"])
    with pytest.raises(OptionError, match="no node of partition cpu"):
        launch._launcher_settings(opts, previous, [])


def test_an_impossible_request_exits_2_before_anything_is_written(tmp_path, monkeypatch, capsys):
    _slurm_launch(monkeypatch, "vm|debug*|2|(null)\n")
    runs = tmp_path / "runs"
    assert launch.main(["--launcher", "slurm", "--shards", "3", "--cpus-per-task", "8", "--runs-root", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --gpus-per-task 0 --cpus-per-task 8: no node of partition debug has that many")
    assert "1 node(s) with 2 CPUs and 0 GPU(s) (vm)" in err and "ask for at most 2 CPUs per task" in err
    assert not runs.exists()


# ---- following the array ----------------------------------------------------------------------------------

def test_squeue_and_sacct_lines_give_each_tasks_state():
    assert parse_states("7_0|RUNNING\n7_1|PENDING\n7_2|CANCELLED\n8|COMPLETING\n") == {
        "7_0": "RUNNING", "7_1": "PENDING", "7_2": "CANCELLED", "8": "COMPLETING"}
    assert parse_states("7_1|CANCELLED by 0\n7_1.batch|CANCELLED\n7_2|COMPLETED\n") == {"7_1": "CANCELLED", "7_2": "COMPLETED"}


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _job(tmp_path: Path, job_id: str) -> SimpleNamespace:
    return SimpleNamespace(job_id=job_id, paths=SimpleNamespace(result_pickle=tmp_path / f"{job_id}_result.pkl"))


def test_the_array_is_followed_to_each_tasks_end_by_the_schedulers_word(tmp_path):
    """Task 0 completes with a result; task 1 is cancelled before its shard wrote one (submitit's own wait would
    never end); task 2 is cancelled and writes a result anyway (SIGTERM reached its shard); task 3 is forgotten by
    the controller and the accounting knows it timed out; nothing is asked of sacct while squeue knows a task."""
    clock = _Clock()
    jobs = [_job(tmp_path, f"5_{i}") for i in range(4)]
    script = {0: {"5_0": "RUNNING", "5_1": "RUNNING", "5_2": "RUNNING", "5_3": "PENDING"},
              4: {"5_0": "COMPLETED", "5_1": "CANCELLED", "5_2": "CANCELLED", "5_3": "RUNNING"},
              10: {"5_0": "COMPLETED", "5_1": "CANCELLED", "5_2": "CANCELLED"}}
    asked = []

    def squeue(arrays):
        asked.append(("squeue", clock.now, tuple(arrays)))
        if clock.now >= 3:
            jobs[0].paths.result_pickle.touch()
            jobs[2].paths.result_pickle.touch()
        return dict(script[max(t for t in script if t <= clock.now)])

    def sacct(arrays):
        asked.append(("sacct", clock.now))
        return {"5_3": "TIMEOUT", "5_0": "COMPLETED"}

    ends = follow_array(jobs, squeue=squeue, sacct=sacct, clock=clock, sleep=clock.sleep, progress=lambda text: None)
    assert ends == {"5_0": "COMPLETED", "5_1": "CANCELLED", "5_2": "CANCELLED", "5_3": "TIMEOUT"}
    assert {a[2] for a in asked if a[0] == "squeue"} == {("5",)}  # one query for the whole array
    assert all(a[1] >= 10 for a in asked if a[0] == "sacct")  # only once a task had left squeue
    assert clock.now < 30


def test_a_completed_task_waits_briefly_for_its_result_and_a_silent_scheduler_does_not_hang_a_finished_one(tmp_path):
    clock = _Clock()
    late, orphan = _job(tmp_path, "9_0"), _job(tmp_path, "9_1")

    def squeue(arrays):
        if clock.now >= 6:
            late.paths.result_pickle.touch()  # a shared filesystem shows the file late
        return {"9_0": "COMPLETED", "9_1": "COMPLETED"}

    ends = follow_array([late, orphan], squeue=squeue, sacct=lambda arrays: {}, clock=clock, sleep=clock.sleep,
                        progress=lambda text: None, grace_s=15)
    assert ends == {"9_0": "COMPLETED", "9_1": "COMPLETED"} and 15 <= clock.now < 20  # the orphan waited out its grace

    clock, done = _Clock(), _job(tmp_path, "10_0")
    done.paths.result_pickle.touch()
    said = []
    ends = follow_array([done], squeue=lambda arrays: None, sacct=lambda arrays: {}, clock=clock, sleep=clock.sleep,
                        progress=said.append, grace_s=15)
    assert ends == {"10_0": "UNKNOWN"} and 60 <= clock.now < 70 and said == [
        "squeue did not answer; still waiting for the array (retrying)"]
