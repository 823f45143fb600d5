"""Training fed by a real loader (``python -m harness bench --loader NAME --workers N``; docs/pipeline.md): the
loader-fed row sits beside the tensor-fed one under another key, every existing key stays as it was, the share of
the step spent waiting for data is a share and follows a known delay per sample, and bad values exit 2."""
from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.bench import loader as bench_loader
from harness.bench.loader import fed_specs, network_sample, warmup_steps
from harness.bench.spec import PATCH_KEY_FIELDS, BenchSpec, Measurement
from harness.store.schema import LOADER_COLUMNS, RESULT_COLUMNS, loader_columns, row_key

REPO = Path(__file__).resolve().parent.parent
DELAY_S = 0.05  # the known cost of one sample of the sleepy pipeline (sleeping: no CPU taken from the step)
TRAIN = BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", overrides="base_c=8", warmup=1, rounds=1, blocks=3)


def _sleepy_file(folder: Path) -> Path:
    path = folder / "sleepy.py"
    path.write_text(textwrap.dedent(f"""
        import time
        def pipeline(patch):
            return lambda: time.sleep({DELAY_S})
    """))
    return path


# --- identity: keys, rows, columns ---------------------------------------------------------------------------

def test_loader_fields_extend_the_key_of_loader_fed_specs_only():
    fed = BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", loader="nnunet", workers=2)
    tensor = BenchSpec("unet3d", (1, 16, 16, 16), 2, "train")
    assert len(tensor.key) == len(PATCH_KEY_FIELDS) and tensor.label == "unet3d-1x16x16x16-b2-train-cpu-fp32"
    assert fed.key[:len(PATCH_KEY_FIELDS)] == tensor.key and fed.key[len(PATCH_KEY_FIELDS):] == ("nnunet", 2)
    assert fed.key != BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", loader="nnunet", workers=0).key
    assert fed.label.endswith("-loader=nnunet-w2") and BenchSpec.from_record(fed.record()) == fed
    # a row of a run older than the loader columns, a new tensor-fed row, and a report frame's NaN: the tensor key
    old = {"model": "unet3d", "overrides": "", "input_shape": "1x16x16x16", "batch": "2", "mode": "train",
           "device": "cpu", "dtype": "fp32", "channels_last": "False", "exec_mode": "eager"}
    assert row_key(old) == row_key({**old, "loader": "none", "workers": ""}) == row_key({**old, "loader": float("nan")})
    assert row_key(old) == tensor.key
    assert row_key({**old, "loader": "nnunet", "workers": "2"}) == fed.key
    assert row_key({**old, "loader": "nnunet", "workers": 2.0}) == fed.key  # a report frame parses numbers


def test_the_loader_columns_are_appended_and_filled_on_loader_fed_rows_only():
    start = RESULT_COLUMNS.index(LOADER_COLUMNS[0])
    assert RESULT_COLUMNS[start:] == LOADER_COLUMNS  # last: no column of an older run moves
    tensor = Measurement(TRAIN, block_s=(1.0, 1.0), block_steps=4)
    assert loader_columns(tensor) == {"loader": "none", "workers": "", "data_wait": "", "data_wait_low": "",
                                      "data_wait_high": ""}
    fed = Measurement(BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", loader="monai", workers=3),
                      block_s=(1.0, 2.0, 1.0), block_steps=4, wait_s=(0.5, 0.5, 0.25))
    assert fed.data_waits == (0.5, 0.25, 0.25) and fed.data_wait == pytest.approx(1 / 3)
    low, high = fed.data_wait_interval
    assert low < fed.data_wait < high
    columns = loader_columns(fed)
    assert columns["loader"] == "monai" and columns["workers"] == 3 and columns["data_wait"] == round(1 / 3, 4)
    assert (columns["data_wait_low"], columns["data_wait_high"]) == (round(low, 4), round(high, 4))


def test_twins_follow_each_3d_training_spec_one_per_worker_count():
    volume = BenchSpec("unet3d", (1, 24, 20, 12), 1, "volume", roi=(16, 16, 16), overlap=0.5, blend="gaussian",
                       sw_batch_size=1)
    found = [BenchSpec("unet3d", (1, 16, 16, 16), 2, "inference"), TRAIN,
             BenchSpec("unet2d", (1, 64, 64), 2, "train"), volume]
    twins = fed_specs(found, "nnunet", (0, 4))
    assert [(s.model, s.mode, s.loader, s.workers) for s in twins] == [
        ("unet3d", "inference", "none", 0), ("unet3d", "train", "none", 0), ("unet3d", "train", "nnunet", 0),
        ("unet3d", "train", "nnunet", 4), ("unet2d", "train", "none", 0), ("unet3d", "volume", "none", 0)]
    assert fed_specs(found, "none", (2,)) == found
    # the warm-up drains the batches the workers made ready while the first step started them
    assert warmup_steps(BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", warmup=1, workers=3, loader="x:y")) == 7
    assert warmup_steps(BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", warmup=0, workers=3, loader="x:y")) == 0


def test_a_sample_becomes_the_networks_input_whatever_form_the_pipeline_gives():
    import torch

    shape = (2, 8, 8, 8)
    nnunet = {"image": torch.ones(2, 8, 8, 8), "segmentation": [torch.zeros(1, 8, 8, 8), torch.zeros(1, 4, 4, 4)]}
    made = network_sample(nnunet, shape)
    assert made["image"].shape == shape and [t.shape for t in made["label"]] == [(1, 8, 8, 8), (1, 4, 4, 4)]
    monai = [{"image": torch.ones(2, 8, 8, 8), "label": torch.zeros(1, 8, 8, 8)}]  # a list of one crop
    assert network_sample(monai, shape)["label"].shape == (1, 8, 8, 8)
    one_channel = network_sample(torch.arange(512.).reshape(1, 8, 8, 8), shape)["image"]
    assert one_channel.shape == shape and torch.equal(one_channel[0], one_channel[1])  # repeated to the channels
    assert network_sample(None, shape)["image"].shape == shape and "label" not in network_sample(None, shape)
    with pytest.raises(ValueError, match="the loader's sample is 2x6x8x8, the network takes 2x8x8x8"):
        network_sample(torch.ones(2, 6, 8, 8), shape)


# --- in the loop: a known delay per sample --------------------------------------------------------------------

class Sleepy:
    """A pipeline whose every sample sleeps DELAY_S: waiting for it takes no CPU from the step."""
    name = "sleepy"

    def build(self, patch, channels=1):
        return lambda: time.sleep(DELAY_S)


@pytest.fixture
def sleepy_registered(monkeypatch):
    monkeypatch.setattr(bench_loader, "_FIND", lambda name: Sleepy())


def test_a_known_delay_per_sample_gives_the_wait_it_implies(sleepy_registered):
    """In the main process (0 workers) each step first waits batch x DELAY_S for its samples: every block waits that
    per step, and its share of the block is what that wait implies for the steps as timed (sleep takes no CPU, so
    this holds on a loaded machine too); with 2 workers making batches while the step runs, the share is smaller."""
    from harness.bench.run import measure

    tensor = measure(TRAIN)
    fed = measure(replace(TRAIN, loader="sleepy", workers=0))
    assert tensor.error == "" and fed.error == "", (tensor.error, fed.error)
    assert tensor.data_wait is None and fed.data_wait is not None and len(fed.data_waits) == TRAIN.blocks
    assert all(0 <= share <= 1 for share in fed.data_waits)
    implied = TRAIN.batch * DELAY_S  # seconds of sleep per batch
    for wait in fed.wait_s:
        assert implied * 0.98 <= wait / fed.block_steps <= implied * 1.5 + 0.02, (wait, fed.block_steps)
    shares = [implied * fed.block_steps / block for block in fed.block_s]  # the delay's share of each block
    assert fed.data_wait == pytest.approx(statistics.fmean(shares), rel=0.35), (fed.data_waits, shares)
    overlapped = measure(replace(TRAIN, loader="sleepy", workers=2, blocks=2))
    assert overlapped.error == "" and overlapped.data_wait < fed.data_wait


def test_an_nnunet_fed_row_is_fed_by_nnunetv2s_own_transforms(monkeypatch):
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (pip install '.[pipeline]'; nnunetv2 --no-deps)")
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    import harness.pipeline  # noqa: F401  (registers the pipelines with the bench)
    from harness.bench.run import measure

    built = []
    factory = nnUNetTrainer.get_training_transforms
    monkeypatch.setattr(nnUNetTrainer, "get_training_transforms",
                        staticmethod(lambda *a, **k: built.append(a[0]) or factory(*a, **k)))
    fed = measure(replace(TRAIN, loader="nnunet", workers=0))  # in the main process: the spy sees the build
    assert fed.error == "" and built == [(16, 16, 16)]
    assert 0 <= fed.data_wait <= 1 and fed.output_shape == (2, 2, 16, 16, 16)


# --- through the bench ----------------------------------------------------------------------------------------

def test_the_bench_writes_the_loader_fed_row_beside_the_tensor_row(tmp_path):
    runs = tmp_path / "runs"
    pipeline = _sleepy_file(tmp_path)
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "--profile", "cpu", "--processes", "1", "--models",
                           "unet3d", "--set",
                           "base_c=8", "--loader", f"{pipeline}:pipeline", "--workers", "0", "--rounds", "1", "--blocks", "2",
                           "--runs-root", str(runs), "--run-id", "fed", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = list(csv.DictReader((runs / "fed" / "results.csv").open()))
    assert [(r["mode"], r["loader"]) for r in rows] == [("inference", "none"), ("train", "none"),
                                                       ("train", f"{pipeline}:pipeline")]
    tensor, fed = rows[1], rows[2]
    assert row_key(tensor) != row_key(fed) and row_key(tensor) == TRAIN.key
    assert fed["workers"] == "0" and 0 <= float(fed["data_wait"]) <= 1 and tensor["data_wait"] == ""
    assert float(fed["data_wait_low"]) <= float(fed["data_wait"]) <= float(fed["data_wait_high"])
    assert "waiting for data" in done.stdout + done.stderr


BENCH = [sys.executable, "-m", "harness", "bench", "--profile", "cpu", "--processes", "1", "--models", "unet3d"]
REFUSALS = [
    ("workers-negative", ["--loader", "monai", "--workers", "-1"], ["--workers must be a non-negative integer"]),
    ("workers-text", ["--loader", "monai", "--workers", "two"], ["--workers must be", "Way out"]),
    ("workers-without-loader", ["--workers", "2"], ["no --loader is given", "Way out"]),
    ("loader-unknown", ["--loader", "nnUNet"], ["--loader 'nnUNet' is not one of nnunet, monai", "Way out"]),
    ("loader-no-file", ["--loader", "/nonexistent/aug.py:build"], ["no such file", "Way out"]),
    ("loader-no-function", ["--loader", "harness.catalog.peers:nosuch"], ["--loader harness.catalog.peers:nosuch",
                                                                        "has no callable", "Way out"]),
    ("loader-2d-only", ["--loader", "monai", "--models", "unet2d"], ["has none", "Way out"]),
    ("loader-whole-volumes", ["--loader", "monai", "--volume", "24x20x12"], ["has none", "Way out"]),
    ("loader-volume-profile", ["--loader", "monai", "--profile", "volume"], ["has none", "Way out"]),
]


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """Every case at once (each a Python start-up importing torch)."""
    started = {}
    for case_id, options, _ in REFUSALS:
        runs = tmp_path_factory.mktemp(case_id)
        started[case_id] = (runs, subprocess.Popen(BENCH + options + ["--runs-root", str(runs)], cwd=REPO,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return {case_id: (process.wait(timeout=600), process.stdout.read(), list(runs.iterdir()))
            for case_id, (runs, process) in started.items()}


@pytest.mark.parametrize("case_id, words", [(c[0], c[2]) for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_bad_loader_options_exit_2_with_nothing_written(refused, case_id, words):
    status, output, written = refused[case_id]
    assert status == 2 and "Traceback" not in output, output
    for word in words:
        assert word in output, output
    assert written == []
