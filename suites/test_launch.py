"""Sweeps in shards: the split is a deterministic partition, the merge unions rows and refuses what it must,
the local launcher's shards add up to the one-process sweep even when one is killed and resumed, the
submitit path runs an array (its local executor), and bad launcher options exit 2 having written nothing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from harness.launch.__main__ import main as launch_main
from harness.store.merge import merge
from harness.launch.shards import assign, parse_shard, select
from harness.options import OptionError
from harness.bench.spec import BenchSpec, Measurement
from harness.store.csvfile import read_rows
from harness.store.schema import row_key
from harness.store.run_store import RunStore

REPO = Path(__file__).resolve().parent.parent
keys = st.tuples(st.text(max_size=6), st.text(max_size=3), st.integers(1, 8), st.booleans())


@given(st.lists(keys, max_size=60, unique=True), st.integers(1, 9))
def test_shards_are_a_balanced_partition_of_the_keys(all_keys, count):
    shards = [select(all_keys, i, count, key=lambda k: k) for i in range(count)]
    assert sorted(k for shard in shards for k in shard) == sorted(all_keys)  # each key in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(shard == [k for k in all_keys if k in shard] for shard in shards)  # original order kept


def test_the_assignment_is_the_same_in_every_process():
    sample = [("unet3d", "", f"1x{n}x{n}x{n}", b, m, "cpu", "fp32", False, "eager")
              for n in (16, 32) for b in (1, 2) for m in ("inference", "train")]
    code = f"from harness.launch.shards import assign; print(sorted(assign({sample!r}, 3).items()))"
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outputs == {str(sorted(assign(sample, 3).items())) + "\n"}


@pytest.mark.parametrize("text", ["3/2", "2/2", "-1/2", "0/0", "a/b", "1"])
def test_a_shard_outside_its_sweep_is_an_option_error(text):
    with pytest.raises(OptionError, match="Way out"):
        parse_shard(text)


ENV = {"device_name": "cpu0", "cpu": "cpu0", "torch": "2.13.0", "cuda": ""}


def _run(folder: Path, models, env=ENV) -> Path:
    store = RunStore(folder)
    store.write_environment(env, profile="smoke")
    for model in models:
        spec = BenchSpec(model=model, input_shape=(1, 16, 16, 16), batch=1, mode="inference")
        store.append(Measurement(spec, latency_s=(0.01,), block_s=(0.01,), block_steps=1, warmup_steps=1), env)
    (folder / "benchmark.json").write_text("{}")
    return folder


def _keys(folder: Path) -> list:
    return [row_key(row) for row in read_rows(folder / "results.csv").rows]


def test_merge_unions_rows_keeps_their_runs_and_loads_like_any_run(tmp_path):
    from harness.report.load import load_results

    a, b = _run(tmp_path / "a", ["unet3d", "unet2d"]), _run(tmp_path / "b", ["resnet50-3d"])
    result = merge([a, b], tmp_path / "m")
    assert result.rows == 3 and sorted(_keys(tmp_path / "m")) == sorted(_keys(a) + _keys(b))
    assert {row["run_id"] for row in read_rows(tmp_path / "m" / "results.csv").rows} == {"a", "b"}
    assert len((tmp_path / "m" / "details.jsonl").read_text().splitlines()) == 3
    record = json.loads((tmp_path / "m" / "environment.json").read_text())
    assert [s["run_id"] for s in record["merged_from"]] == ["a", "b"]
    assert {p.name for p in (tmp_path / "m").glob("benchmark*.json")} == {"benchmark.a.json", "benchmark.b.json"}
    assert len(load_results([tmp_path / "m"])) == 3


def test_merge_refuses_a_configuration_measured_twice_unless_asked(tmp_path, capsys):
    from harness.__main__ import main as harness_main

    a, b = _run(tmp_path / "a", ["unet3d"]), _run(tmp_path / "b", ["unet3d", "unet2d"])
    assert harness_main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert "measured more than once" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert harness_main(["merge", str(a), str(b), "--out", str(tmp_path / "m"), "--keep", "latest"]) == 0
    assert sorted(_keys(tmp_path / "m")) == sorted(_keys(b))


def test_merge_refuses_mixed_machines_unless_asked(tmp_path):
    a = _run(tmp_path / "a", ["unet3d"])
    b = _run(tmp_path / "b", ["unet2d"], env={**ENV, "device_name": "NVIDIA H200", "cuda": "13.0"})
    with pytest.raises(OptionError, match="2 kinds of machine"):
        merge([a, b], tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert merge([a, b], tmp_path / "m", allow_mixed_machines=True).rows == 2


def test_the_submitit_array_runs_a_simulated_sweep_through_a_kill_and_a_resume(tmp_path):
    pytest.importorskip("submitit")
    from launch_evidence import simulated_sweep

    outcome = simulated_sweep(40, 2, tmp_path)
    assert outcome["unfinished_after_kill"] == [1] and outcome["resubmitted_on_resume"] == [1]
    assert outcome["same_configuration_set"] and outcome["duplicates"] == 0 and outcome["merged_rows"] == 40
    assert outcome["details_lines"] == 40


def _pids_of(run_id: str) -> list[int]:
    """Our own shard's process (its command line names its run folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"bench" in argv and run_id.encode() in argv:
            found.append(int(entry.name))
    return found


def _expected_keys(models: str) -> set:
    """The configurations one pytest process measures for these options."""
    from harness.bench.profiles import specs

    return {s.key for s in specs("smoke", "cpu", models)}


def test_local_launcher_shards_killed_and_resumed_equal_one_process(tmp_path):
    runs = tmp_path / "runs"
    launch = [sys.executable, "-m", "harness.launch", "--launcher", "local", "--shards", "2", "--sweep", "sw",
              "--runs-root", str(runs), "--profile", "smoke", "--device", "cpu", "--models", "unet2d*"]
    process = subprocess.Popen(launch, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = runs / "sw-shard-1-of-2" / "results.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (victim.exists() and read_rows(victim).rows):
        time.sleep(0.02)
    for pid in _pids_of("sw-shard-1-of-2"):
        os.kill(pid, signal.SIGKILL)  # one shard dies (OOM killer, node failure); the other goes on
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1, output
    assert "shard(s) 1 (killed by signal 9) did not finish" in output and "--resume sw" in output
    assert len(read_rows(victim).rows) == 1 and not (runs / "sw" / "results.csv").exists()

    resumed = subprocess.run([sys.executable, "-m", "harness.launch", "--resume", "sw", "--runs-root", str(runs)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = json.loads((runs / "sw" / "launch.json").read_text())
    assert {i: s["attempts"] for i, s in manifest["status"].items()} == {"0": 1, "1": 2}  # only missing work rerun
    merged = _keys(runs / "sw")
    assert len(merged) == len(set(merged)) and set(merged) == _expected_keys("unet2d*")
    last_summary = (runs / "sw" / "logs" / "shard-1.log").read_text().strip().splitlines()[-1]
    assert last_summary.startswith("1 passed") and "skipped" in last_summary  # resumed, not redone
    from harness.report.load import load_results

    assert len(load_results([runs / "sw"])) == len(merged)
    wrong = subprocess.run([sys.executable, "-m", "harness", "bench",
                            "--runs-root", str(runs), "--resume", "sw"], cwd=REPO, capture_output=True, text=True)
    assert wrong.returncode == 2 and "python -m harness.launch --resume sw" in wrong.stdout + wrong.stderr


def _refused(argv, capsys, runs: Path) -> str:
    assert launch_main([*argv, "--runs-root", str(runs)]) == 2
    assert not runs.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Way out" in err
    return err


def test_bad_launcher_options_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    assert "--shards must be" in _refused(["--shards", "0"], capsys, runs)
    assert "--workers must be" in _refused(["--workers", "-1"], capsys, runs)
    assert "launcher sets --shard" in _refused(["--shards", "2", "--run-id", "x"], capsys, runs)
    assert "no sweep of that name" in _refused(["--resume", "nope"], capsys, runs)
    assert "--models 'nope' matches no variant" in _refused(["--shards", "2", "--models", "nope"], capsys, runs)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    if "submitit" in sys.modules or __import__("importlib").util.find_spec("submitit"):
        assert "no sbatch" in _refused(["--launcher", "slurm", "--shards", "2"], capsys, runs)
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    assert "needs submitit" in _refused(["--launcher", "slurm", "--shards", "2"], capsys, runs)


def test_a_shard_outside_the_sweep_stops_pytest_with_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "-q",
                           "--profile", "smoke", "--models", "unet2d", "--shard", "3/2", "--runs-root", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--shard '3/2' is not a shard" in done.stdout + done.stderr
    assert not (tmp_path / "r").exists()


def test_a_planned_configuration_without_a_row_is_a_finding_and_its_shard_runs_again_on_resume(tmp_path, monkeypatch):
    """A shard that ran to its end (exit 0) but left a planned configuration without a row: the merge names it,
    the launch exits 1, and the shard counts as unfinished, so --resume runs it again (resuming its own run)."""
    from harness.launch import sweep as sweep_module
    from harness.launch.plan import SweepPlan

    written = BenchSpec("unet2d", (1, 32, 32), 2, "inference")
    lost = BenchSpec("unet2d", (1, 32, 32), 2, "train")
    plan = SweepPlan("sw", tmp_path, 1, ["-m", "harness", "bench"], {"launcher": "local"},
                     planned=[[list(s.key), list(s.key)] for s in (written, lost)])
    plan.save()

    def one_shard_that_loses_a_row(plan, progress=print):
        _run(plan.shard_folder(0), [])
        store = RunStore(plan.shard_folder(0))
        store.append(Measurement(written, latency_s=(0.01,), block_s=(0.01,), block_steps=1, warmup_steps=1), ENV)
        plan.record(0, 0)
        return {0: 0}

    monkeypatch.setattr(sweep_module, "run_pending", one_shard_that_loses_a_row)
    outcome = sweep_module.run_sweep(plan, progress=lambda text: None)
    assert outcome.merged.missing == (lost.key,) and outcome.unfinished == (0,)
    assert plan.pending() == [0] and "--resume" in plan.shard_argv(0)
    reloaded = SweepPlan.load(tmp_path, "sw")
    assert reloaded.pending() == [0] and reloaded.planned_keys() == [written.key, lost.key]
    plan.record(0, 0)  # a new attempt clears the mark; the merge after it decides again
    assert plan.pending() == []


def test_cudnn_benchmark_is_part_of_the_key_and_old_rows_without_it_keep_theirs():
    on = BenchSpec("unet2d", (1, 32, 32), 2, "inference", device="cuda", cudnn_benchmark=True)
    off = BenchSpec("unet2d", (1, 32, 32), 2, "inference", device="cuda", cudnn_benchmark=False)
    assert on.key != off.key
    row = {"model": "unet2d", "overrides": "", "input_shape": "1x32x32", "batch": "2", "mode": "inference",
           "device": "cuda", "dtype": "fp32", "channels_last": "False", "exec_mode": "eager"}
    assert row_key(row) == off.key  # a run written before the column: its legacy default, False
    assert row_key({**row, "cudnn_benchmark": "True"}) == on.key


def test_a_shard_with_nothing_to_measure_has_finished():
    from harness.launch.plan import SweepPlan, describe_exit

    plan = SweepPlan("sw", Path("/nonexistent"), 3, [], {}, status={"0": {"returncode": 3, "attempts": 1},
                                                                   "1": {"returncode": 4, "attempts": 1},
                                                                   "2": {"returncode": -9, "attempts": 1}})
    assert plan.pending() == [1, 2] and "nothing measured" in describe_exit(3) and "unexpected" in describe_exit(4)


def test_a_merged_sweep_of_refusals_only_is_nothing_to_judge(tmp_path):
    from harness.launch.__main__ import nothing_measured

    store = RunStore(tmp_path / "run")
    spec = BenchSpec("unet2d", (1, 32, 32), 2, "inference")
    store.append(Measurement(spec, error="unsupported: base_c must be at least 1"), ENV)
    assert nothing_measured(store.csv_path) and nothing_measured(tmp_path / "none.csv")
    store.append(Measurement(BenchSpec("unet2d", (1, 32, 32), 2, "train"), latency_s=(0.01,), block_s=(0.01,),
                             block_steps=1, warmup_steps=1), ENV)
    assert not nothing_measured(store.csv_path)
