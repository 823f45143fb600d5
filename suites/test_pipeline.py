"""python -m harness pipeline (docs/pipeline.md): a user pipeline of known cost comes out at its known per-core
rate; cores per GPU and epoch time follow from recorded rates and step times; the nnU-Net pipeline is nnunetv2's
own; bad options exit 2 with nothing written."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from harness.pipeline.budget import budget_rows, cores_needed, epoch
from harness.pipeline.pipelines import user
from harness.pipeline.rates import per_core

COST_S = 0.01  # a user pipeline that sleeps 10 ms per sample: 100 samples/s on any core
TOLERANCE = 1.25  # measured rate within [known / 1.25, known * 1.0x] (sleep only ever overshoots)


@pytest.fixture
def sleepy(tmp_path):
    path = tmp_path / "sleepy.py"
    path.write_text(textwrap.dedent(f"""
        import time
        def pipeline(patch):
            return lambda: time.sleep({COST_S})
        def itself(patch):
            time.sleep({COST_S})
    """))
    return path


@pytest.mark.parametrize("function", ["pipeline", "itself"])
def test_user_pipeline_known_rate(sleepy, function):
    row = per_core(user(f"{sleepy}:{function}"), (8, 8, 8), blocks=3, k=5)
    known = 1 / COST_S
    assert row["error"] == ""
    assert known / TOLERANCE <= row["samples_per_s"] <= known * 1.02, row
    assert row["ci_low"] <= row["samples_per_s"] <= row["ci_high"]


def test_failing_pipeline_is_a_row(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("def pipeline(patch):\n    raise RuntimeError('no data')\n")
    row = per_core(user(f"{path}:pipeline"), (8, 8, 8), blocks=2, k=2)
    assert "RuntimeError: no data" in row["error"]


def test_cores_and_epoch_arithmetic():
    # a 100 ms step at batch 2 eats 20 samples/s; at 5 samples/s per core that is 4 cores
    assert cores_needed(100.0, 2, 5.0) == pytest.approx(4.0)
    cpu_bound = epoch(100.0, 2, 5.0, cores=2)  # 2 cores feed 10/s: 0.2 s per iteration
    assert cpu_bound["limited_by"] == "cpu" and cpu_bound["epoch_s"] == pytest.approx(250 * 0.2)
    step_bound = epoch(100.0, 2, 5.0, cores=8)
    assert step_bound["limited_by"] == "step" and step_bound["epoch_s"] == pytest.approx(250 * 0.1)
    rates = [{"pipeline": "p", "patch": "32x32x32", "samples_per_s": 5.0, "error": ""},
             {"pipeline": "p", "patch": "64x64x64", "error": "boom"}]
    steps = [{"run": "r-gpu", "model": "m", "patch": "32x32x32", "batch": 2, "device": "cuda", "step_ms": 100.0},
             {"run": "r-cpu", "model": "m", "patch": "64x64x64", "batch": 2, "device": "cpu", "step_ms": 100.0}]
    rows = budget_rows(rates, steps, cores=2)
    assert len(rows) == 1 and rows[0]["run"] == "r-gpu"
    assert rows[0]["cores_needed"] == pytest.approx(4.0) and rows[0]["epoch_s"] == pytest.approx(50.0)
    assert rows[0]["limited_by"].startswith("CPU")
    assert budget_rows(rates, steps, cores=8)[0]["limited_by"].startswith("GPU")


def test_command_records_what_it_derives(sleepy, tmp_path):
    """The written budget follows from the rates and step rows the run itself records."""
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    (runs / "r1" / "results.csv").write_text(
        "model,input_shape,batch,mode,device,step_ms,error\nm,1x8x8x8,2,train,cpu,40.0,\n"
        "m,1x8x8x8,2,inference,cpu,10.0,\n")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness", "pipeline", "--pipelines", "none", "--pipeline",
                           f"{sleepy}:pipeline", "--patches", "8", "--blocks", "3", "--samples", "3", "--cores", "3",
                           "--runs-root", str(runs), "--out", str(out), "--run-id", "t", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "t" / "pipeline.json").read_text())
    rate = result["rates"][0]["samples_per_s"]
    (row,) = result["budget"]
    assert row["run"] == "r1" and row["device"] == "cpu" and "no GPU rows" in result["steps_note"]
    assert row["cores_needed"] == pytest.approx((2 / 0.040) / rate)
    assert row["epoch_s"] == pytest.approx(250 * max(0.040, 2 / (rate * 3)))


def test_nnunet_pipeline_is_nnunetv2s_own():
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (pip install '.[pipeline]'; nnunetv2 --no-deps)")
    pytest.importorskip("batchgeneratorsv2", reason="batchgeneratorsv2 is not installed (the pipeline extra)")
    from harness.pipeline.pipelines import builtin, nnunet_transforms

    transforms, settings = nnunet_transforms((16, 16, 16))
    assert type(transforms).__module__.startswith("batchgeneratorsv2.")
    inner = {type(t).__module__.split(".")[0] for t in transforms.transforms}
    assert inner <= {"batchgeneratorsv2", "nnunetv2"} and "batchgeneratorsv2" in inner
    assert settings["mirror_axes"] == (0, 1, 2) and settings["initial_patch_size"][0] > 16
    out = builtin("nnunet").build((16, 16, 16))()
    assert tuple(out["image"].shape[1:]) == (16, 16, 16)
    assert isinstance(out["segmentation"], list)  # deep-supervision targets


@pytest.mark.parametrize("argv", [["--patches", "0"], ["--patches", "x"], ["--pipelines", "dali"],
                                  ["--blocks", "0"], ["--cores", "-1"], ["--pipeline", "nocolon"],
                                  ["--pipeline", "/no/such/file.py:f"], ["--workers", "a"], ["--run-id", "a/b"]])
def test_bad_options_exit_2_and_write_nothing(argv, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "out"
    status = main(["pipeline", "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert status == 2, (argv, err)
    assert "Traceback" not in err and "Way out" in err
    assert not out.exists()


def test_nothing_to_measure_exits_3(tmp_path):
    from harness.cli import main

    assert main(["pipeline", "--pipelines", "none", "--out", str(tmp_path / "o")]) == 3
    assert not (tmp_path / "o").exists()


def test_help_shows_exit_codes():
    done = subprocess.run([sys.executable, "-m", "harness", "pipeline", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--pipeline" in done.stdout and "exit status" in done.stdout


def test_one_core_gives_torch_its_threads_back():
    import torch

    from harness.pipeline.rates import one_core

    before = torch.get_num_threads()
    with one_core():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# --- item 4: the pipelines as the bench's loader takes them -------------------------------------------------------

@pytest.mark.parametrize("name", ["nnunet", "monai"])
def test_builtin_pipelines_make_the_networks_input_at_its_channels(name):
    from harness.bench.loader import network_sample
    from harness.pipeline.pipelines import available, builtin

    if available(name):
        pytest.skip(available(name))
    made = builtin(name).build((16, 16, 16), 2)()  # a two-channel case: augmented as the library augments it
    sample = network_sample(made, (2, 16, 16, 16))
    assert sample["image"].shape == (2, 16, 16, 16) and type(sample["image"]).__name__ == "Tensor"
    assert "label" in sample


def test_budget_takes_tensor_fed_steps_only(tmp_path):
    """A loader-fed row's step includes waiting for data: it is not the step the pipeline must keep fed."""
    from harness.pipeline.budget import step_rows

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "results.csv").write_text(
        "model,input_shape,batch,mode,device,step_ms,error,loader,workers\n"
        "m,1x8x8x8,2,train,cuda,40.0,,none,\nm,1x8x8x8,2,train,cuda,90.0,,nnunet,2\n")
    (tmp_path / "r0").mkdir()  # a run older than the loader columns: tensor-fed
    (tmp_path / "r0" / "results.csv").write_text("model,input_shape,batch,mode,device,step_ms,error\n"
                                                 "m,1x8x8x8,2,train,cuda,50.0,\n")
    rows, note = step_rows(tmp_path)
    assert sorted(r["step_ms"] for r in rows) == [40.0, 50.0] and "CUDA" in note


# --- item 5: the report page ----------------------------------------------------------------------------------

@pytest.fixture
def small_run(sleepy, tmp_path):
    """A real small pipeline run (the sleepy pipeline, DataLoader scaling at 1 and 2 workers) budgeted against a
    committed CUDA row; its folder of results."""
    runs = tmp_path / "runs"
    (runs / "gpu").mkdir(parents=True)
    (runs / "gpu" / "results.csv").write_text("model,input_shape,batch,mode,device,step_ms,error\n"
                                              "unet3d-resnet50,1x8x8x8,2,train,cuda,28.6,\n")
    out = tmp_path / "pipeline"
    done = subprocess.run([sys.executable, "-m", "harness", "pipeline", "--pipelines", "none", "--pipeline",
                           f"{sleepy}:pipeline", "--patches", "8", "--blocks", "3", "--samples", "3", "--workers", "1,2",
                           "--loader-samples", "6", "--cores", "4", "--runs-root", str(runs), "--out", str(out),
                           "--run-id", "20260101T000000Z", "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_the_report_page_shows_what_the_run_recorded(small_run, tmp_path):
    from harness.report import pipeline as page

    written = page.write(tmp_path / "report", small_run)
    assert [p.name for p in written] == ["pipeline.md", "pipeline-workers.png", "pipeline-workers.pdf"]
    assert all(p.stat().st_size > 0 for p in written)
    result = json.loads((small_run / "20260101T000000Z" / "pipeline.json").read_text())
    text = written[0].read_text()
    (rate,) = result["rates"]
    assert f"| {rate['samples_per_s']:.2f} | [{rate['ci_low']:.2f}, {rate['ci_high']:.2f}] |" in text
    for row in result["loader_scaling"]:  # each DataLoader rate, against workers x the one-core rate
        assert f"| {row['workers']} | {row['samples_per_s']:.2f} | " in text
        assert f"{row['samples_per_s'] / (row['workers'] * rate['samples_per_s']):.0%}" in text
    (budget,) = result["budget"]  # cores per GPU for the variant, from its committed CUDA step
    assert budget["model"] == "unet3d-resnet50" and budget["limited_by"].startswith("GPU")
    assert f"| 28.6 | gpu | {budget['cores_needed']:.2f} | {budget['epoch_s']:.1f} (GPU) |" in text
    for _, url, _ in page.ANCHORS:
        assert f"({url})" in text
    assert "![throughput against workers](pipeline-workers.png)" in text
    # the same run gives the same page
    assert page.write(tmp_path / "again", small_run)[0].read_text() == text


def test_the_report_page_is_empty_without_a_run_and_refuses_a_damaged_one(tmp_path):
    from harness.options import InputFileError
    from harness.report import pipeline as page

    assert page.write(tmp_path / "report", tmp_path / "none") == [] and not (tmp_path / "report").exists()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "pipeline.json").write_text("{\"rates\": ")
    with pytest.raises(InputFileError, match="not a pipeline result"):
        page.write(tmp_path / "report", tmp_path / "runs")


def test_the_report_page_sets_loader_fed_rows_beside_their_tensor_rows(small_run, tmp_path):
    import pandas as pd

    from harness.report import pipeline as page

    same = dict(run_id="r", model="unet3d", overrides="", input_shape="1x16x16x16", batch=2, mode="train",
                device="cpu", dtype="fp32", exec_mode="eager", channels_last=False, error="")
    results = pd.DataFrame([dict(same, loader="none", workers=float("nan"), step_ms=100.0, data_wait=float("nan"),
                                 data_wait_low=float("nan"), data_wait_high=float("nan")),
                            dict(same, loader="nnunet", workers=2.0, step_ms=250.0, data_wait=0.6, data_wait_low=0.55,
                                 data_wait_high=0.65)])
    (row,) = page.loop_rows(results)
    assert row[4:10] == ["nnunet", "2", "100.0", "250.0", "2.50", "0.60 [0.55, 0.65]"]
    text = page.write(tmp_path / "report", small_run, results)[0].read_text()
    assert "## In the loop" in text and "0.60 [0.55, 0.65]" in text
