"""Measurements become rows; failures are rows; a run directory survives interruption and resumes."""
import csv
from dataclasses import replace


from harness.store.schema import RESULT_COLUMNS, row_key
from harness.bench.environment import capture
from harness.bench.run import measure
from harness.bench.spec import BenchSpec
from harness.store.run_store import RunStore


def test_an_unsupported_configuration_is_an_error_row_not_an_exception():
    m = measure(BenchSpec("unet3d", (1, 8, 8, 8), 1, "inference"))
    assert m.error.startswith("unsupported: ") and "at least 16" in m.error and "(1, 1, 16, 16, 16)" in m.error
    assert m.latency_s == () and m.latency_ms is None and m.step_ms is None


def test_rows_are_flushed_as_they_finish_and_a_resume_sees_them(tmp_path):
    env = capture()
    store = RunStore(tmp_path / "run")
    cold = measure(BenchSpec("unet2d", (1, 32, 32), 2, "inference", warmup=0, rounds=2, blocks=1, overrides="base_c=4"))
    bad = measure(BenchSpec("unet3d", (1, 8, 8, 8), 1, "train"))
    ok = measure(BenchSpec("unet2d", (1, 32, 32), 1, "inference", warmup=1, rounds=1, blocks=1, overrides="base_c=4"))
    unsettled = replace(ok, spec=replace(ok.spec, batch=3), warmup_settled=False)  # as a CUDA warm-up can end
    for m in (cold, bad, ok, unsettled):
        store.append(m, env)
    resumed = RunStore(tmp_path / "run")  # a new process after an interruption
    # Final: a good row, a refusal, and a row whose options asked for no warm-up. Measured again: a row
    # whose warm-up did not settle.
    assert resumed.completed_keys() == {cold.spec.key, ok.spec.key, bad.spec.key}
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert list(rows[0]) == RESULT_COLUMNS
    assert rows[2]["warm"] == "True"
    assert rows[0]["error"] == "" and float(rows[0]["latency_ms"]) > 0 and float(rows[0]["step_ms"]) > 0
    assert float(rows[0]["gmacs"]) > 0 and float(rows[0]["step_gflop"]) > 0 and float(rows[0]["mfu"]) > 0
    assert rows[0]["warm"] == "False"  # no warm-up: recorded, but not a measurement
    assert rows[0]["overrides"] == "base_c=4" and row_key(rows[0]) == cold.spec.key
    assert rows[1]["error"].startswith("unsupported") and rows[1]["latency_ms"] == ""
    assert rows[3]["warm"] == "False" and rows[3]["error"] == ""
    assert len((tmp_path / "run" / "details.jsonl").read_text().splitlines()) == 4
    torn, again = resumed.prepare_resume()
    assert torn == "" and again == ["unet2d 1x32x32 b3 inference: not warm"]
    kept = [row_key(r) for r in csv.DictReader((tmp_path / "run" / "results.csv").open())]
    assert kept == [cold.spec.key, bad.spec.key, ok.spec.key]
    assert len((tmp_path / "run" / "details.jsonl").read_text().splitlines()) == 3


def test_runs_written_before_the_latency_throughput_split_still_load(tmp_path):
    from harness.report.load import load_results

    old = tmp_path / "old"
    old.mkdir()
    header = ("model,overrides,input_shape,batch,mode,device,dtype,channels_last,compile,cudnn_benchmark,warmup,"
              "rounds,median_ms,iqr_ms,samples_per_s,gmacs,error,device_name,run_id,finished_at")
    (old / "results.csv").write_text(f"{header}\n"
                                     "unet3d,,1x16x16x16,2,inference,cpu,fp32,False,False,False,1,5,100.0,2.0,20.0,4.2,,"
                                     "cpu0,old,2026-11-25T00:00:00+00:00\n"
                                     "unet3d,,1x16x16x16,2,train,cpu,fp32,False,True,False,0,1,300.0,0.0,6.7,4.2,,"
                                     "cpu0,old,2026-11-25T00:00:01+00:00\n")
    df = load_results([old]).set_index("mode")
    assert df.loc["inference", "latency_ms"] == 100.0 and df.loc["inference", "latency_iqr_ms"] == 2.0
    assert df.loc["inference", "samples_per_s"] == 20.0 and df.loc["inference", "step_ms"] != df.loc["inference", "step_ms"]
    assert df.loc["inference", "exec_mode"] == "eager" and df.loc["train", "exec_mode"] == "compile"
    assert df.loc["inference", "ok"] and not df.loc["train", "ok"]  # no warm-up: kept out of tables
