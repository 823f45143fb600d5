"""Faults lose nothing and pass nothing: a sweep killed with SIGKILL mid-configuration and resumed ends
with every configuration exactly once; a torn last record is reported and dropped; a resume with other
options is refused unless asked for; a configuration that fails, or whose output is not finite, is an
error row and a failed test, and a resume measures it again."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.csvfile import read_rows
from harness.store.schema import row_key

REPO = Path(__file__).resolve().parent.parent
# Four configurations (two variants x two modes), each a second or so on CPU.
SWEEP = [sys.executable, "-m", "harness", "bench", "-q",
         "--profile", "smoke", "--models", "unet2d*"]
TOTAL = 4


def _sweep(runs: Path, *options: str, **kwargs):
    return subprocess.Popen(SWEEP + ["--runs-root", str(runs), *options], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _rows(run: Path) -> list[dict]:
    return read_rows(run / "results.csv").rows


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A sweep SIGKILLed once its first row is on disk, before its last."""
    runs = tmp_path_factory.mktemp("runs")
    process = _sweep(runs, "--run-id", "killed")
    csv_path = runs / "killed" / "results.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if csv_path.exists() and len(_rows(csv_path.parent)) >= 1:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    rows_at_kill = len(_rows(csv_path.parent))
    assert 1 <= rows_at_kill < TOTAL, f"the kill came too late to test anything ({rows_at_kill} rows)"
    return runs, csv_path.parent, rows_at_kill


def test_a_killed_sweep_resumes_to_every_configuration_exactly_once(killed_run):
    runs, run, rows_at_kill = killed_run
    # Power loss in the middle of the next row: half a record and no line end.
    with (run / "results.csv").open("a") as handle:
        handle.write("unet2d-transposed,,1x32x32,2,train,cpu,fp3")
    resumed = _sweep(runs, "--resume", "killed")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert "torn record" in output and "unet2d-transposed,,1x32x32,2,train" in output
    keys = [row_key(row) for row in _rows(run)]
    assert len(keys) == len(set(keys)) == TOTAL
    assert read_rows(run / "results.csv").torn == ""
    assert f"{TOTAL - rows_at_kill} passed, {rows_at_kill} skipped" in output, output
    details = [json.loads(line) for line in (run / "details.jsonl").read_text().splitlines()]
    assert len(details) == TOTAL
    record = json.loads((run / "environment.json").read_text())
    assert len(record["resumed"]) == 1


def test_the_report_loader_leaves_out_a_torn_record_and_says_so(tmp_path, capsys):
    from harness.report.load import load_results

    run = tmp_path / "run"
    run.mkdir()
    header = "model,overrides,input_shape,batch,mode,device,dtype,channels_last,compile,error,device_name,finished_at,run_id"
    (run / "results.csv").write_text(f"{header}\r\nunet3d,,1x16x16x16,1,inference,cpu,fp32,False,False,,cpu0,t,r\r\n"
                                     "unet3d,,1x16x16x16,2,infer")
    df = load_results([run])
    assert list(df["batch"]) == [1]
    assert "torn last record" in capsys.readouterr().err


def test_a_record_damaged_before_the_last_is_an_error_not_silently_dropped(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b,c\r\n1,2\r\n1,2,3\r\n")
    with pytest.raises(ValueError, match="record 2 has 2 fields"):
        read_rows(path)


def test_resuming_with_other_options_is_refused_unless_asked_for(killed_run):
    runs, run, _ = killed_run
    rows_before = (run / "results.csv").read_bytes()
    refused = _sweep(runs, "--resume", "killed", "--rounds", "2")
    output = refused.communicate(timeout=300)[0]
    assert refused.returncode == 2, output
    assert "rounds: None then, 2 now" in output and "--resume-mixed" in output
    assert (run / "results.csv").read_bytes() == rows_before
    allowed = _sweep(runs, "--resume", "killed", "--rounds", "2", "--resume-mixed")
    assert allowed.wait(timeout=300) == 0
    assert len(list(csv.DictReader((run / "results.csv").open()))) == TOTAL


# A user model whose forward runs on the meta device (so its probed envelope accepts every input) but
# raises on real tensors, or returns NaN; FAULT selects which.
FAULTY_MODEL = """
import os
import torch
import torch.nn as nn


class Faulty(nn.Module):
    def __init__(self, in_channels=1, num_classes=2):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        fault = os.environ.get("FAULT", "")
        real = x.device.type != "meta"
        if real and fault == "raise":
            raise RuntimeError("the kernel exploded on real tensors")
        if real and fault == "typeerror":  # not a RuntimeError: once a configuration without a row
            raise TypeError("unsupported operand on real tensors")
        if real and fault == "shape":  # the meta probe saw the right shape; real tensors give half the depth
            return y[:, :, ::2]
        if fault == "shape-everywhere":  # wrong on the meta device too: the envelope predicts the wrong shape
            return y[:, :, ::2]
        if fault == "nan":
            return y * float("nan")
        return y


def build(in_channels=1, num_classes=2):
    return Faulty(in_channels, num_classes)
"""


def _faulty_sweep(tmp_path, fault: str, *options: str) -> subprocess.CompletedProcess:
    path = tmp_path / "faulty_nets.py"
    path.write_text(FAULTY_MODEL)
    command = [sys.executable, "-m", "harness", "bench", "-q",
               "--profile", "smoke", "--warmup", "1", "--model", f"{path}:build", "--runs-root", str(tmp_path / "runs"),
               *options]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "FAULT": fault})


def test_a_sweep_whose_configurations_fail_exits_non_zero_with_every_error_row_written(tmp_path):
    done = _faulty_sweep(tmp_path, "raise", "--run-id", "broken")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 failed" in output and "the kernel exploded on real tensors" in output
    assert "2 of 2 configuration(s) failed to measure" in output
    rows = _rows(tmp_path / "runs" / "broken")
    assert sorted(r["mode"] for r in rows) == ["inference", "train"]
    assert all("the kernel exploded" in r["error"] for r in rows)


def test_a_nan_output_is_an_error_row_left_out_of_tables_and_measured_again_on_resume(tmp_path):
    from harness.report.load import load_results

    done = _faulty_sweep(tmp_path, "nan", "--run-id", "nan")
    assert done.returncode == 1, done.stdout + done.stderr
    run = tmp_path / "runs" / "nan"
    rows = _rows(run)
    assert len(rows) == 2 and all(r["error"].startswith("output not finite") for r in rows)
    assert float(rows[0]["latency_ms"]) > 0  # the numbers are kept for inspection, as an error row
    assert not load_results([run])["ok"].any()
    fixed = _faulty_sweep(tmp_path, "", "--resume", "nan")  # the model mended: both are measured again
    output = fixed.stdout + fixed.stderr
    assert fixed.returncode == 0, output
    assert "2 row(s) of nan were not valid measurements and are measured again" in output and "2 passed" in output
    rows = _rows(run)
    assert len(rows) == 2 and all(r["error"] == "" and r["warm"] == "True" for r in rows)
    assert load_results([run])["ok"].all()
    assert len((run / "details.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("fault, words", [
    ("typeerror", "TypeError: unsupported operand on real tensors"),
    ("shape", "wrong output shape: the step returned"),
    ("shape-everywhere", "a segmentation network gives one prediction per voxel"),
])
def test_any_failure_and_a_wrong_output_shape_are_error_rows_not_lost_configurations(tmp_path, fault, words):
    done = _faulty_sweep(tmp_path, fault, "--run-id", fault)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    rows = _rows(tmp_path / "runs" / fault)
    assert sorted(r["mode"] for r in rows) == ["inference", "train"], output
    inference = next(r for r in rows if r["mode"] == "inference")
    assert words in inference["error"] and all(r["error"] for r in rows), [r["error"] for r in rows]
    assert not inference["warm"] and not any(r["error"].startswith("unsupported") for r in rows)
    assert "2 failed" in output and "0 measured, 2 failed, 0 refused, 0 unsettled" in output


def test_a_raising_measurement_is_an_error_row_but_an_interrupt_still_propagates(monkeypatch):
    from harness.bench import run
    from harness.bench.spec import BenchSpec

    spec = BenchSpec("unet2d", (1, 32, 32), 2, "inference", overrides="base_c=2")

    def boom(*_, **__):
        raise AssertionError("an assert inside a user model")
    monkeypatch.setattr(run, "prepare", boom)
    assert run.measure(spec).error == "AssertionError: an assert inside a user model"

    def interrupt(*_, **__):
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "prepare", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run.measure(spec)


def test_a_two_shard_launch_with_a_model_raising_typeerror_does_not_exit_0_and_keeps_error_rows(tmp_path):
    path = tmp_path / "faulty_nets.py"
    path.write_text(FAULTY_MODEL)
    runs = tmp_path / "runs"
    launch = [sys.executable, "-m", "harness.launch", "--launcher", "local", "--shards", "2", "--sweep", "sw",
              "--runs-root", str(runs), "--profile", "smoke", "--warmup", "1", "--device", "cpu",
              "--model", f"{path}:build"]
    done = subprocess.run(launch, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FAULT": "typeerror"})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 configuration(s) failed to measure" in output
    rows = _rows(runs / "sw")
    assert sorted(r["mode"] for r in rows) == ["inference", "train"]
    assert all(r["error"].startswith("TypeError: unsupported operand") for r in rows)
    manifest = json.loads((runs / "sw" / "launch.json").read_text())
    assert sorted(tuple(row) for _, row in manifest["planned"]) == sorted(row_key(r) for r in rows)


def test_a_sweep_that_measures_nothing_ends_with_nothing_to_judge(tmp_path):
    """Every configuration refused (base_c=0 builds no network): pytest's exit status 5 (the CLI's 3)."""
    import pytest as pytest_module

    done = subprocess.run([*SWEEP[:-2], "--models", "unet2d", "--set", "base_c=0", "--runs-root", str(tmp_path / "r"),
                           "--run-id", "none"], cwd=REPO, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode in (pytest_module.ExitCode.NO_TESTS_COLLECTED, 3), output
    assert "0 measured, 0 failed, 2 refused, 0 unsettled" in output and "nothing to judge" in output


@pytest.mark.parametrize("options, words", [
    (["--profile", "nonsense"], "--profile 'nonsense' is not one of"),
    (["--rounds", "abc"], "--rounds must be an integer"),
    (["--runs-root", "{file}"], "is a file, not a folder"),
    (["--runs-root", "{file}/below"], "cannot be made"),
    (["--runs-root", "/proc/harness-nope"], "--runs-root '/proc/harness-nope' cannot be"),
])
def test_bad_runner_options_are_one_paragraph_and_exit_2_with_nothing_written(tmp_path, options, words):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    options = [o.replace("{file}", str(a_file)) for o in options]
    runs_root = [] if "--runs-root" in options else ["--runs-root", str(tmp_path / "runs")]
    done = subprocess.run([*SWEEP, *runs_root, *options], cwd=REPO, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert words in output and "Way out" in output and "usage:" not in output and "INTERNALERROR" not in output
    assert "Traceback" not in output and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
