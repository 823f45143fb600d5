"""Measurements become rows; failures are rows; a run directory survives interruption and resumes."""
import csv

import pytest

from harness.columns import RESULT_COLUMNS
from harness.environment import capture
from harness.measure import measure
from harness.spec import BenchSpec, Measurement
from harness.store import RunStore, row_key


def test_statistics_are_derived_from_the_raw_samples():
    m = Measurement(BenchSpec("unet3d", (1, 16, 16, 16), 4, "inference"), times_s=(0.4, 0.1, 0.2, 0.3))
    assert m.median_ms == pytest.approx(250.0)
    assert m.iqr_ms == pytest.approx(150.0)
    assert m.samples_per_s == pytest.approx(16.0)


def test_an_unsupported_configuration_is_an_error_row_not_an_exception():
    m = measure(BenchSpec("unet3d", (1, 8, 8, 8), 1, "inference"))
    assert m.error.startswith("unsupported: ") and "at least 16" in m.error and "(1, 1, 16, 16, 16)" in m.error
    assert m.times_s == () and m.median_ms is None


def test_rows_are_flushed_as_they_finish_and_a_resume_sees_them(tmp_path):
    env = capture()
    store = RunStore(tmp_path / "run")
    ok = measure(BenchSpec("unet2d", (1, 32, 32), 2, "inference", warmup=0, rounds=2, overrides="base_c=4"))
    bad = measure(BenchSpec("unet3d", (1, 8, 8, 8), 1, "train"))
    store.append(ok, env)
    store.append(bad, env)
    resumed = RunStore(tmp_path / "run")  # a new process after an interruption
    assert resumed.completed_keys() == {ok.spec.key, bad.spec.key}
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert list(rows[0]) == RESULT_COLUMNS
    assert rows[0]["error"] == "" and float(rows[0]["median_ms"]) > 0 and float(rows[0]["gmacs"]) > 0
    assert rows[0]["overrides"] == "base_c=4" and row_key(rows[0]) == ok.spec.key
    assert rows[1]["error"].startswith("unsupported") and rows[1]["median_ms"] == ""
    assert len((tmp_path / "run" / "details.jsonl").read_text().splitlines()) == 2
