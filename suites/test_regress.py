"""The regression checker's rules: exact facts, and a timing verdict that needs significance, a
minimum effect, and the slowdown in every replicate (fresh pair of processes); against a committed run,
the baseline chosen by the configurations it holds, and whatever was not compared named, never passed."""
import csv
import json
import random

import pytest

from harness.bench import environment
from harness.bench.spec import BenchSpec
from harness.evidence import facts
from harness.evidence.regress.baseline import Baseline, choose_baseline
from harness.evidence.regress.checks import combine
from harness.evidence.regress.cli import main
from harness.evidence.regress.client import interleaved
from harness.evidence.regress.plan import quick_specs
from harness.evidence.regress.render import print_report
from harness.evidence.regress.results import (EXIT_CANNOT_JUDGE, EXIT_OK, EXIT_REGRESSION, NotCompared,
                                              RegressResult)
from harness.stats import ReplicateRule
from harness.store.schema import RESULT_COLUMNS


def judge(replicates, min_effect):
    """The verdict and the change of block ratios grouped by replicate (regress's rule)."""
    change, verdict, _ = ReplicateRule(min_effect).judge(replicates)
    return verdict.outcome, change


def _ratios(centre, spread=0.03, n=5, seed=0):
    rng = random.Random(seed)
    return [centre * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def _replicates(*centres, spread=0.03):
    return [_ratios(centre, spread, seed=i) for i, centre in enumerate(centres)]


def test_equal_timings_are_unchanged():
    assert judge(_replicates(1.0, 1.0), 0.10)[0] == "unchanged"


def test_a_clear_slowdown_is_slower_and_a_speedup_faster():
    assert judge(_replicates(1.3, 1.3), 0.10)[0] == "slower"
    assert judge(_replicates(0.7, 0.7), 0.10)[0] == "faster"


def test_a_significant_but_small_slowdown_is_below_the_minimum_effect():
    verdict, change = judge(_replicates(1.04, 1.04, spread=0.01), 0.10)
    assert change.interval.low > 1 and verdict == "unchanged"


def test_noise_that_straddles_one_is_not_a_regression():
    assert judge([[0.8, 1.3, 0.9, 1.25], [0.85, 1.2, 0.95, 1.15]], 0.10)[0] == "unchanged"


def test_a_slowdown_in_one_pair_of_processes_only_is_not_a_regression():
    # One pair 30% apart for its whole life (a placement artefact), the next pair equal: the pooled
    # median can clear the bar, the replicate rule does not.
    verdict, change = judge(_replicates(1.3, 1.3, 1.0), 0.10)
    assert change.interval.low > 1 and change.ratio > 1.1
    assert verdict == "unchanged"
    assert judge(_replicates(1.3, 1.3, 1.2), 0.10)[0] == "slower"


def test_fact_differences_name_the_metric_and_both_values():
    before = {"unet3d": {"macs": 10, "params_total": 5}}
    after = {"unet3d": {"macs": 12, "params_total": 5}}
    assert facts.differences(before, after) == [{"model": "unet3d", "metric": "macs", "before": 10, "after": 12}]
    assert facts.differences(before, before) == []


# --- against a committed run: which run, what it holds, what was not compared ----------------------

INFER_SPEC = BenchSpec("unet2d", (1, 64, 64), 1, "inference")  # the quick configurations of --models unet2d
TRAIN_SPEC = BenchSpec("unet2d", (1, 64, 64), 2, "train")
INFER, TRAIN = INFER_SPEC.key, TRAIN_SPEC.key  # the configuration identity the baseline is searched by
INFER_LABEL, TRAIN_LABEL = INFER_SPEC.label, TRAIN_SPEC.label  # "unet2d-1x64x64-b1-inference-cpu-fp32", ...
QUICK = ["--models", "unet2d", "--replicates", "1", "--blocks", "1", "--rounds", "1"]


def _write_run(root, name, configs, env=None, latency_s=(0.01, 0.01, 0.01), **row_values):
    """A committed run folder as the writer leaves it: results.csv, details.jsonl, environment.json.
    ``configs``: BenchSpec keys (model, overrides, input_shape, batch, mode, ...); ``row_values`` override row
    columns (error, warm)."""
    run = root / name
    run.mkdir(parents=True)
    with (run / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for model, _, shape, batch, mode, *_ in configs:
            writer.writerow({**dict.fromkeys(RESULT_COLUMNS, ""), "model": model, "input_shape": shape,
                             "batch": batch, "mode": mode, "device": "cpu", "dtype": "fp32", "exec_mode": "eager",
                             "channels_last": "False", "warmup": "1", "warm": "True",
                             "latency_ms": 1e3 * latency_s[0], "peak_mem_mb": "50.0", "run_id": name, **row_values})
    (run / "details.jsonl").write_text("".join(json.dumps({
        "spec": {"model": model, "input_shape": [int(n) for n in shape.split("x")], "batch": int(batch),
                 "mode": mode, "device": "cpu", "precision": "fp32", "exec_mode": "eager", "channels_last": False,
                 "overrides": ""}, "latency_s": list(latency_s), "error": ""}) + "\n"
        for model, _, shape, batch, mode, *_ in configs))
    (run / "environment.json").write_text(json.dumps({"environment": env or environment.capture("cpu"),
                                                      "options": {"device": "cpu"}}))
    return run


def _elsewhere():
    return {**environment.capture("cpu"), "device_name": "Some Other CPU", "cpu": "Some Other CPU"}


def _regress(tmp_path, capsys, *argv):
    status = main([*QUICK, "--device", "cpu", "--out", str(tmp_path / "verdict.json"), *argv])
    return status, capsys.readouterr().out, json.loads((tmp_path / "verdict.json").read_text())


def test_the_planned_configurations_are_what_the_baseline_is_searched_for():
    specs = quick_specs(["unet2d"], "cpu")
    assert [s.key for s in specs] == [INFER, TRAIN]
    assert [s.label for s in specs] == ["unet2d-1x64x64-b1-inference-cpu-fp32", "unet2d-1x64x64-b2-train-cpu-fp32"]


def test_a_baseline_holding_none_of_the_planned_configurations_cannot_judge(tmp_path, capsys):
    # Like the committed compare run: batch 2 at 32^3 only, while the quick configurations are others.
    root = tmp_path / "runs"
    _write_run(root, "20261126T051742Z-cpu-compare", [BenchSpec("unet3d", (1, 32, 32, 32), 2, "inference").key,
                                                     BenchSpec("unet3d", (1, 32, 32, 32), 2, "train").key])
    status, out, verdict = _regress(tmp_path, capsys, "--runs-root", str(root))
    assert status == EXIT_CANNOT_JUDGE
    assert "it holds 0 of the 2 planned configurations" in out
    assert "compared no timing: none of the 2 planned configurations" in out
    assert INFER_LABEL in out and TRAIN_LABEL in out
    assert "--baseline RUN_DIR" in out and "nox -s bench -- --profile cpu" in out  # cpu or cpu-full: what measures them
    assert "--device cpu --models unet2d`" in out
    assert "0 of 2 planned timings compared: CANNOT JUDGE" in out
    assert "no regression" not in out
    assert verdict["exit_status"] == EXIT_CANNOT_JUDGE and len(verdict["not_compared"]) == 2
    # The same run named with --baseline: the same answer.
    status, out, _ = _regress(tmp_path, capsys, "--baseline", str(root / "20261126T051742Z-cpu-compare"))
    assert status == EXIT_CANNOT_JUDGE and "(given with --baseline): it holds 0 of the 2" in out


def test_the_baseline_is_chosen_by_coverage_not_by_name(tmp_path):
    root = tmp_path / "runs"
    here = environment.capture("cpu")
    _write_run(root, "20260101T000000Z-cpu-cpu", [INFER, TRAIN])
    _write_run(root, "20260601T000000Z-cpu-cpu", [INFER])
    # Newer by name, but nothing it holds is a planned configuration, or a valid measurement of one.
    _write_run(root, "20261201T000000Z-cpu-compare", [BenchSpec("unet2d", (1, 128, 128), 2, "inference").key])
    _write_run(root, "20261202T000000Z-cpu-smoke", [INFER, TRAIN], warm="False")
    _write_run(root, "20261203T000000Z-cpu-failed", [INFER, TRAIN], error="RuntimeError: boom")
    # Holds everything and is newest, but from another machine: this machine's runs come first.
    _write_run(root, "20261204T000000Z-cpu-cpu", [INFER, TRAIN], env=_elsewhere())
    base, why = choose_baseline(root, "cpu", [INFER, TRAIN], here)
    assert base.run.name == "20260101T000000Z-cpu-cpu"
    assert why.startswith("baseline 20260101T000000Z-cpu-cpu: it holds 2 of the 2 planned configurations, "
                          "the most among the 5 committed cpu runs from this machine")
    assert "20260601T000000Z-cpu-cpu 1" in why and "20261202T000000Z-cpu-smoke 0" in why
    # Ties go to the newest.
    _write_run(root, "20260301T000000Z-cpu-cpu", [INFER, TRAIN])
    assert choose_baseline(root, "cpu", [INFER, TRAIN], here)[0].run.name == "20260301T000000Z-cpu-cpu"


def test_error_and_not_warm_rows_are_named_as_not_a_baseline(tmp_path):
    run = _write_run(tmp_path, "smoke", [INFER], warm="False")
    assert Baseline(run, "cpu").why_not(INFER).startswith("not warm")
    run = _write_run(tmp_path, "failed", [INFER], error="RuntimeError: boom")
    assert "boom" in Baseline(run, "cpu").why_not(INFER)
    assert Baseline(run, "cpu").why_not(TRAIN) == "no row for it"


def test_without_a_run_from_this_machine_it_says_so_and_cannot_judge_timings(tmp_path, capsys):
    root = tmp_path / "runs"
    _write_run(root, "20261204T000000Z-cpu-cpu", [INFER, TRAIN], env=_elsewhere())
    status, out, _ = _regress(tmp_path, capsys, "--runs-root", str(root))
    assert status == EXIT_CANNOT_JUDGE
    assert "(none from this machine)" in out and "so its timings cannot be judged" in out
    assert "timing: the baseline is from another machine" in out
    assert "was measured on Some Other CPU" in out and "0 of 2 planned timings compared: CANNOT JUDGE" in out


def test_partial_coverage_lists_the_missing_and_still_judges_the_rest(tmp_path, capsys):
    root = tmp_path / "runs"
    # The baseline's steps took 100 s: the one compared configuration is faster, not a regression, but
    # the training step it lacks leaves the check unable to say "no regression".
    _write_run(root, "20260101T000000Z-cpu-cpu", [INFER], latency_s=(100.0, 100.0, 100.0))
    status, out, verdict = _regress(tmp_path, capsys, "--runs-root", str(root))
    assert status == EXIT_CANNOT_JUDGE
    assert [row["config"] for row in verdict["timings"]] == [INFER_LABEL]
    assert verdict["timings"][0]["verdict"] == "faster"
    assert verdict["timings"][0]["rule"].startswith("slower when the median ratio new/old is at least 1.1")
    assert verdict["not_compared"] == [{"config": TRAIN_LABEL, "reason": "not in the baseline: no row for it"}]
    assert "not compared (1):" in out and TRAIN_LABEL in out
    assert "1 of 2 planned timings compared: CANNOT JUDGE" in out


def test_a_regression_among_the_compared_is_reported_even_when_some_are_missing(tmp_path, capsys):
    root = tmp_path / "runs"
    _write_run(root, "20260101T000000Z-cpu-cpu", [INFER], latency_s=(1e-9, 1e-9, 1e-9))
    status, out, verdict = _regress(tmp_path, capsys, "--runs-root", str(root))
    assert status == EXIT_REGRESSION
    assert verdict["timings"][0]["verdict"] == "slower" and TRAIN_LABEL in out
    assert "1 slower" in out and ": REGRESSION" in out


def _part(old_mem, new_mem):
    return {"ratios": [1.0, 1.01], "old_times": [0.01, 0.01], "new_times": [0.01, 0.0101],
            "old_mem": old_mem, "new_mem": new_mem}


SPEC = INFER_SPEC


@pytest.mark.parametrize("old_mem, new_mem, side", [([None] * 3, [50.0] * 3, "old"), ([50.0] * 3, [None] * 3, "new"),
                                                    ([None] * 3, [None] * 3, "old and new")])
def test_a_missing_memory_reading_is_unknown_not_equal(old_mem, new_mem, side, capsys):
    row = combine(SPEC, [_part(old_mem, new_mem)], 0.10, 0.10)
    assert row.memory.verdict.outcome == "unknown"
    assert row.memory.verdict.detail == f"no peak-memory reading on the {side} side"
    assert "never counted as equal" in row.memory.verdict.rule
    result = RegressResult("against", planned=[SPEC], configs=[row],
                           not_compared=[NotCompared(f"{row.label} peak memory", row.memory.verdict.detail)])
    assert print_report(result) == EXIT_CANNOT_JUDGE
    out = capsys.readouterr().out
    assert "unknown (no peak-memory reading" in out and "1 memory unknown" in out and "no regression" not in out


def test_memory_readings_present_on_both_sides_are_compared():
    def memory(old_mem, new_mem):
        return combine(SPEC, [_part(old_mem, new_mem)], 0.10, 0.10).memory.verdict.outcome

    assert memory([50.0] * 3, [51.0] * 3) == "same"
    assert memory([0.0] * 3, [0.0] * 3) == "same"  # a real 0 MB
    assert memory([50.0] * 3, [200.0] * 3) == "heavier"


def test_interleaved_keeps_a_missing_memory_reading_as_none():
    class FakeWorker:  # a worker on a platform without memory readings
        def ask(self, cmd, **_):
            return {"ok": True} if cmd == "prepare" else {"times": [0.01]} if cmd == "time" else {"peak_mb": None}

    part = interleaved(FakeWorker(), FakeWorker(), SPEC, blocks=2, rounds=1)
    assert part["old_mem"] == [None] * 3 and part["new_mem"] == [None] * 3
    assert combine(SPEC, [part], 0.10, 0.10).memory.verdict.outcome == "unknown"


def test_facts_only_plans_no_timing_and_can_pass(capsys):
    result = RegressResult("facts", notes=["facts only"])
    assert print_report(result) == EXIT_OK
    assert "no regression" in capsys.readouterr().out
