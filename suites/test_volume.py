"""Whole-volume inference (issue 18): ``harness.infer_volume`` over MONAI's sliding windows is exact where it must
be, counts windows as MONAI scans them, mirrors as nnU-Net does, its rows carry the volume columns and keys, and
bad volume options stop before anything runs, and a CUDA volume row carries the memory model's prediction of its
peak, simulated exactly as the pass runs (issue 27). Tiny models and volumes: seconds on a 2-core CPU."""
import csv
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, strategies as st

import harness
from harness.bench.environment import capture
from harness.bench.profiles import PROFILES, specs
from harness.bench.run import WorkCache, measure
from harness.bench.spec import KEY_FIELDS, PATCH_KEY_FIELDS, BenchSpec, Measurement
from harness.bench.volume import count_windows, mirrored, search_sw_batch
from harness.catalog.registry import get_variant
from harness.store.run_store import RunStore
from harness.store.schema import RESULT_COLUMNS, VOLUME_COLUMNS, row_key

REPO = Path(__file__).resolve().parent.parent
TINY = "base_c=2"  # the article's unet3d, 2 channels wide: milliseconds per 16³ window


def _issue_formula(spatial, roi, overlap) -> int:
    """The count as issue 18 states it, written out independently of harness.bench.volume."""
    total = 1
    for size, r in zip(spatial, roi):
        interval = max(1, math.floor(r * (1 - overlap)))
        total *= 1 if size <= r else math.ceil((size - r) / interval) + 1
    return total


def _monai_calls(spatial, roi, overlap) -> int:
    """The windows MONAI's own scan visits: predictor calls at sw_batch_size 1."""
    from monai.inferers import sliding_window_inference

    calls = []
    sliding_window_inference(torch.zeros(1, 1, *spatial), roi, 1, lambda x: calls.append(1) or x, overlap=overlap)
    return len(calls)


def _volume_spec(**fields) -> BenchSpec:
    values = dict(model="unet3d", input_shape=(1, 24, 20, 12), batch=1, mode="volume", overrides=TINY, warmup=1,
                  rounds=2, blocks=1, roi=(16, 16, 16), overlap=0.5, blend="gaussian", sw_batch_size=2, mirror=False)
    return BenchSpec(**{**values, **fields})


# --- (a) a model whose output at a voxel depends only on that voxel: stitching is exact ------------------------

sizes = st.integers(1, 40)


@given(spatial=st.tuples(sizes, sizes, sizes), roi=st.tuples(*[st.integers(6, 16)] * 3),
       overlap=st.sampled_from([0.0, 0.25, 0.5, 0.6]), sw=st.integers(1, 4), blend=st.sampled_from(["gaussian", "constant"]),
       mirror=st.booleans())
def test_a_pointwise_model_stitched_equals_its_whole_volume_pass(spatial, roi, overlap, sw, blend, mirror):
    assume(all(n % r for n, r in zip(spatial, roi)))  # no window divides any axis (shorter axes are padded)
    assume(count_windows(spatial, roi, overlap) <= 48)
    torch.manual_seed(0)
    model = torch.nn.Conv3d(2, 3, kernel_size=1)
    volume = torch.randn(1, 2, *spatial)
    stitched = harness.infer_volume(model, volume, roi, overlap, blend, sw, mirror)
    with torch.no_grad():
        whole = model(volume)
    assert stitched.shape == whole.shape
    torch.testing.assert_close(stitched, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("mirror", [False, True])
def test_every_blend_with_and_without_mirroring_at_sizes_no_window_divides(blend, mirror):
    torch.manual_seed(1)
    model = torch.nn.Conv3d(1, 2, kernel_size=1)
    for shape, roi in [((37, 21, 50), (16, 16, 16)), ((10, 19, 33), (16, 8, 12))]:  # the second pads its first axis
        volume = torch.randn(2, 1, *shape)  # a batch of two volumes
        with torch.no_grad():
            whole = model(volume)
        torch.testing.assert_close(harness.infer_volume(model, volume, roi, 0.5, blend, 3, mirror), whole,
                                   atol=1e-5, rtol=1e-5)
    single = torch.randn(1, 17, 18, 19)  # one volume without the batch axis: (C, D, H, W)
    with torch.no_grad():
        expected = model(single[None])[0]
    torch.testing.assert_close(harness.infer_volume(model, single, (16, 16, 16), 0.25, blend, 1, mirror), expected,
                               atol=1e-5, rtol=1e-5)


# --- (b) windows: the count MONAI's scan makes ----------------------------------------------------------------

@given(spatial=st.tuples(*[st.integers(1, 48)] * 3), roi=st.tuples(*[st.integers(1, 20)] * 3),
       overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 0.95]))
def test_windows_are_counted_as_monai_scans_them(spatial, roi, overlap):
    assume(_issue_formula(spatial, roi, overlap) <= 400)
    assert count_windows(spatial, roi, overlap) == _issue_formula(spatial, roi, overlap) == _monai_calls(spatial, roi, overlap)


def test_monai_computes_the_interval_in_floating_point():
    # 20 x (1 - 0.9) is 1.9999999999999996 in binary floating point: MONAI steps by 1, not 2.
    assert _monai_calls((30, 20, 20), (20, 20, 20), 0.9) == count_windows((30, 20, 20), (20, 20, 20), 0.9) == 11


def test_a_volume_row_carries_every_column_and_its_windows_are_monais(tmp_path):
    spec = _volume_spec(mirror=True)
    m = measure(spec)
    assert m.error == "", m.error
    windows = _monai_calls(spec.input_shape[1:], spec.roi, spec.overlap)
    assert m.windows == windows == _issue_formula(spec.input_shape[1:], spec.roi, spec.overlap) == 4
    assert m.forward_passes == 8 * windows and m.volume_padded  # 12 < 16: MONAI pads that axis
    assert m.output_shape == m.expected_output_shape == (1, 2, 24, 20, 12)
    store = RunStore(tmp_path / "run")
    store.append(m, capture())
    row = next(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    start = RESULT_COLUMNS.index(VOLUME_COLUMNS[0])  # the volume columns together, after the environment
    assert list(row) == RESULT_COLUMNS and RESULT_COLUMNS[start:start + len(VOLUME_COLUMNS)] == VOLUME_COLUMNS
    assert {k: row[k] for k in ("mode", "input_shape", "volume_shape", "roi", "overlap", "blend", "sw_batch_size",
                                "mirror", "windows", "forward_passes", "volume_padded", "sw_batch_best")} == {
        "mode": "volume", "input_shape": "1x24x20x12", "volume_shape": "1x24x20x12", "roi": "16x16x16",
        "overlap": "0.5", "blend": "gaussian", "sw_batch_size": "2", "mirror": "True", "windows": str(windows),
        "forward_passes": str(8 * windows), "volume_padded": "True", "sw_batch_best": ""}
    numbers = {k: float(row[k]) for k in ("volume_s", "volume_iqr_s", "volumes_per_s", "mvox_per_s", "stitch_fraction",
                                          "volume_gflop", "achieved_tflops", "mfu", "peak_mem_mb", "gmacs", "latency_ms")}
    assert numbers["volume_s"] > 0 and numbers["volumes_per_s"] > 0 and numbers["volume_gflop"] > 0
    assert numbers["mvox_per_s"] == pytest.approx(numbers["volumes_per_s"] * 24 * 20 * 12 / 1e6, rel=1e-3)
    assert numbers["volume_s"] == pytest.approx(numbers["latency_ms"] / 1e3, rel=1e-4)
    assert numbers["stitch_fraction"] < 1
    # FLOPs of every forward pass: 2 x MACs, per window, times the forward passes.
    assert numbers["volume_gflop"] == pytest.approx(2 * numbers["gmacs"], rel=0.05)
    assert row_key(row) == spec.key and store.completed_keys() == {spec.key}


# --- (c) mirroring: the average of the flipped passes ----------------------------------------------------------

def test_a_mirrored_pass_is_the_average_of_the_flipped_passes_computed_directly():
    torch.manual_seed(2)
    model = torch.nn.Conv3d(1, 2, kernel_size=3, padding=1)  # not flip-invariant: mirroring changes its output
    flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    calls = []

    def counted(x):
        calls.append(x.shape[0])
        return model(x)

    def direct(x):
        return sum(torch.flip(model(torch.flip(x, dims)), dims) if dims else model(x) for dims in flips) / 8

    window = torch.randn(3, 1, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(mirrored(model)(window), direct(window))
    volume = torch.randn(1, 1, 21, 18, 27)
    plain = harness.infer_volume(model, volume, (16, 16, 16), 0.5, "gaussian", 2)
    mirror = harness.infer_volume(counted, volume, (16, 16, 16), 0.5, "gaussian", 2, mirror=True)
    torch.testing.assert_close(mirror, harness.infer_volume(direct, volume, (16, 16, 16), 0.5, "gaussian", 2))
    assert not torch.allclose(mirror, plain)
    assert sum(calls) == 8 * count_windows((21, 18, 27), (16, 16, 16), 0.5)  # windows x 8 forward passes


# --- --sw-batch auto, keys, profiles, the report ---------------------------------------------------------------

def test_sw_batch_auto_leaves_a_row_per_tried_value_and_marks_one_best(tmp_path):
    tried = search_sw_batch(_volume_spec(sw_batch_size=0, warmup=1, rounds=1), work_cache=WorkCache())
    sizes = [m.spec.sw_batch_size for m in tried]
    assert sizes == [2 ** i for i in range(len(sizes))] and sizes[-1] <= 4  # 4 windows: never past 4
    assert sum(bool(m.sw_batch_best) for m in tried) == 1 and all(m.error == "" for m in tried)
    best = next(i for i, m in enumerate(tried) if m.sw_batch_best)
    for before, after in zip(tried[:best], tried[1:best + 1]):  # each accepted doubling gained more than 5%
        assert after.volumes_per_s > 1.05 * before.volumes_per_s
    if best + 1 < len(tried):  # the search stopped on a value that did not gain enough
        assert tried[best + 1].volumes_per_s <= 1.05 * tried[best].volumes_per_s
    store = RunStore(tmp_path / "run")
    for m in tried:
        store.append(m, capture())
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [r["sw_batch_size"] for r in rows] == [str(n) for n in sizes]
    assert [r["sw_batch_best"] for r in rows].count("True") == 1 and "" not in [r["sw_batch_best"] for r in rows]


def test_volume_fields_extend_the_key_of_volume_specs_only():
    patch = BenchSpec("unet3d", (1, 16, 16, 16), 2, "inference")
    assert len(patch.key) == len(PATCH_KEY_FIELDS) and patch.label == "unet3d-1x16x16x16-b2-inference-cpu-fp32"
    old_row = {"model": "unet3d", "overrides": "", "input_shape": "1x16x16x16", "batch": "2", "mode": "inference",
               "device": "cpu", "dtype": "fp32", "channels_last": "False", "compile": "False"}  # no volume columns
    assert row_key(old_row) == patch.key
    a, b = _volume_spec(), _volume_spec(overlap=0.25)
    assert len(a.key) == len(KEY_FIELDS) and a.key != b.key and a.label != b.label
    assert BenchSpec.from_record(a.record()) == a and BenchSpec.from_record(patch.record()) == patch


def test_the_volume_profile_measures_volumes_no_window_divides():
    chosen = PROFILES["volume"]
    for device in ("cpu", "cuda"):
        plan = chosen.volume_plan(device)
        assert plan.origin and all(n % plan.roi for shape in plan.shapes for n in shape)
    found = specs("volume", "cpu", list(chosen.also))
    assert {s.model for s in found} == set(chosen.also) and {s.mode for s in found} == {"volume"}
    assert all(get_variant(s.model).spatial_dims == 3 for s in found)
    smoke = [s for s in specs("smoke", "cpu", ["unet2d", "unet3d", "nnunet-plain"]) if s.mode == "volume"]
    assert len(smoke) == 1 and smoke[0].model == "unet3d"  # the tests session measures one tiny volume
    assert all(s.blocks >= 3 for s in found)  # stitch_fraction's interval needs paired blocks


def _volume_measurement(block_s, forward_s, steps=2) -> Measurement:
    return Measurement(_volume_spec(), latency_s=(1.0,), block_s=tuple(block_s), block_steps=steps,
                       forward_s=tuple(forward_s), warmup_steps=1)


def test_stitch_fraction_pairs_each_block_with_the_forward_passes_timed_beside_it():
    # The machine's load doubles between blocks: a volume and its forward passes slow down together, and each
    # pair still says 0.2.
    m = _volume_measurement([2.0, 4.0, 8.0], [0.8, 1.6, 3.2])  # per volume: 1, 2, 4 s; forward 0.8, 1.6, 3.2 s
    assert m.stitch_fractions == pytest.approx((0.2, 0.2, 0.2))
    assert m.stitch_fraction == pytest.approx(0.2) and m.stitch_interval == pytest.approx((0.2, 0.2))
    assert m.stitch_resolved is True


def test_stitch_fraction_is_unresolved_where_its_interval_spans_zero():
    m = _volume_measurement([2.0, 2.0, 2.0], [1.02, 0.97, 1.0])  # fractions -0.02, 0.03, 0.0
    low, high = m.stitch_interval
    mean = (-0.02 + 0.03 + 0.0) / 3
    sd = statistics.stdev([-0.02, 0.03, 0.0])
    assert m.stitch_fraction == pytest.approx(mean)
    assert (low, high) == pytest.approx((mean - 4.303 * sd / 3 ** 0.5, mean + 4.303 * sd / 3 ** 0.5), rel=1e-3)
    assert low < 0 < high and m.stitch_resolved is False
    from harness.pytest_plugin.session import stitch_text

    assert "unresolved" in stitch_text(m)
    one = _volume_measurement([2.0], [0.5])
    assert one.stitch_interval is None and one.stitch_resolved is None and "no interval" in stitch_text(one)


def test_the_t_quantiles_are_scipys():
    scipy_stats = pytest.importorskip("scipy.stats")
    from harness.bench.spec import t_quantile_975

    for df in range(1, 31):
        assert t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=6e-4)


def test_a_volume_row_carries_the_stitch_interval(tmp_path):
    m = _volume_measurement([2.0, 2.2, 1.8], [1.5, 1.6, 1.4])
    row = RunStore(tmp_path / "run").append(m, {})
    low, high = m.stitch_interval
    assert (row["stitch_fraction_low"], row["stitch_fraction_high"]) == (round(low, 4), round(high, 4))


def test_the_report_shows_the_whole_volume_table_the_plot_and_mlperfs_reference(tmp_path):
    from harness.report import volume as report_volume
    from harness.report.__main__ import build
    from harness.report.load import load_results

    store = RunStore(tmp_path / "run")
    for sw in (1, 2):
        store.append(measure(_volume_spec(sw_batch_size=sw, rounds=1)), capture())
    written = build([tmp_path / "run"], tmp_path / "report")  # a run of whole volumes only
    names = {p.name for p in written}
    assert {"volume.md", "volume.csv"} <= names and any(n.startswith("volume-sw-batch-") and n.endswith(".png")
                                                       for n in names)
    table = (tmp_path / "report" / "volume.md").read_text()
    assert "Whole-volume inference" in table and "Stitch fraction" in table and table.count("| unet3d ") == 2
    _, volumes = report_volume.split(load_results([tmp_path / "run"]))
    reference = report_volume.reference(volumes)
    assert "6.44" in reference and "3.15" in reference and "No committed GPU run" in reference


# --- (d) bad volume options: exit 2, one paragraph, nothing written ---------------------------------------------

BENCH = [sys.executable, "-m", "harness", "bench", "--profile", "smoke"]
CASES = [
    ("roi-the-model-cannot-run", ["--models", "unet3d", "--volume", "40x40x40", "--roi", "24x16x16"],
     ["--roi 24x16x16: unet3d cannot run", "Way out: --roi 16x16x16"]),
    ("volume-zero", ["--volume", "0x40x40"], ["every size must be at least 1"]),
    ("volume-negative", ["--volume", "40x-3x40"], ["every size must be at least 1"]),
    ("volume-unparseable", ["--volume", "40xfoo"], ["is not a size"]),
    ("roi-unparseable", ["--volume", "40x40x40", "--roi", "16x16"], ["is not a size"]),
    ("overlap-one", ["--overlap", "1"], ["in [0, 1)"]),
    ("overlap-negative", ["--overlap", "-0.25"], ["in [0, 1)"]),
    ("overlap-unparseable", ["--overlap", "half"], ["in [0, 1)"]),
    ("sw-batch-zero", ["--sw-batch", "0"], ["an integer of at least 1, or auto"]),
    ("preset-unknown", ["--preset", "nnUNet"], ["is not a preset", "nnunet, mlperf, monai"]),
    ("blend-unknown", ["--blend", "linear"], ["is not a blending mode"]),
    ("window-options-without-volumes", ["--profile", "cpu", "--mirror"], ["measures no whole volume", "--volume"]),
    ("volume-for-no-3d-network", ["--volume", "40x40x40", "--models", "unet2d"], ["needs a 3D segmentation network"]),
]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every case at once (each a Python start-up: in parallel they take the time of the slowest)."""
    results_before = _tree(REPO / "results")
    started = {}
    for case_id, arguments, _ in CASES:
        runs = tmp_path_factory.mktemp(case_id)
        started[case_id] = (runs, subprocess.Popen(BENCH + arguments + ["--runs-root", str(runs)], cwd=REPO,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    finished = {case_id: (process.wait(timeout=600), process.stdout.read(), _tree(runs))
                for case_id, (runs, process) in started.items()}
    return finished, results_before == _tree(REPO / "results")


@pytest.mark.parametrize("case_id, words", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_volume_option_exits_2_with_one_paragraph_and_writes_nothing(refusals, case_id, words):
    finished, results_untouched = refusals
    status, output, written = finished[case_id]
    assert status == 2, output
    assert "Traceback" not in output, output
    message = [line for line in output.splitlines() if "error:" in line]
    assert len(message) == 1, output  # one paragraph
    for word in words:
        assert word in message[0], output
    assert written == [] and results_untouched



# --- (e) the predicted peak of a CUDA volume row (issue 27): the pass simulated on the CPU ------------------------

def _cuda_volume(**fields) -> BenchSpec:
    return _volume_spec(**{"device": "cuda", "cudnn_benchmark": True, **fields})


@pytest.mark.parametrize("fields", [dict(), dict(mirror=True, precision="bf16"), dict(sw_batch_size=1, blend="constant")],
                         ids=["sw2", "mirrored-bf16", "sw1-constant"])
def test_a_simulated_volume_pass_holds_what_the_same_pass_run_on_cpu_tensors_holds(fields):
    """The pass on fake tensors, each repeated forward pass replayed rather than simulated, against the same pass
    run for real on CPU tensors under the same tracker (every window's forward pass run): the same live-tensor
    peak, and the same peak with the workspaces; the replay is event for event the simulation of every call."""
    from harness.memory import prediction, replay, volume_trace

    spec = _cuda_volume(**fields)
    simulated = volume_trace(spec)
    every_call = volume_trace(spec, replay_forwards=False)
    real = volume_trace(spec, fake=False)
    assert simulated.events == every_call.events
    assert replay(simulated.events).floor == replay(real.events).floor > 0
    assert prediction(simulated.events) == prediction(real.events)


def test_the_predicted_volume_peak_grows_by_the_volume_and_monais_stitched_buffers():
    """A larger volume, the same windows: the pass holds more by the volume, MONAI's stitched output (one value
    per class and voxel) and its count map (one per voxel), all float32, and by nothing else."""
    from harness.memory import predict_peak_memory

    small, large = _cuda_volume(input_shape=(1, 24, 20, 16)), _cuda_volume(input_shape=(1, 40, 20, 16))
    grown = (40 - 24) * 20 * 16 * (1 + 2 + 1) * 4  # input channel, 2 classes, count map; float32
    done = {s: predict_peak_memory(s) for s in (small, large)}
    assert (done[large].floor_mb - done[small].floor_mb) * 2 ** 20 == pytest.approx(grown, abs=3 * 512)
    assert done[large].peak_mb > done[small].peak_mb


def test_a_cuda_volume_row_carries_its_prediction_and_its_domain(monkeypatch):
    """On a fake CUDA device (the prediction itself runs on the CPU): the three prediction columns, labelled as
    extrapolated while no volume row measured on a GPU is committed; nothing for a CPU row; a failure is said."""
    from harness.bench import predictors

    import harness.memory  # noqa: F401  (registers the predictor)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91900)
    columns = predictors.predicted_columns(_cuda_volume())
    assert set(columns) == {"predicted_peak_mb", "predicted_floor_mb", "predicted_domain"}
    assert 0 < columns["predicted_floor_mb"] <= columns["predicted_peak_mb"]
    assert columns["predicted_domain"] == "extrapolated: volume pass (fitted on inference and train steps)"
    assert predictors.predicted_columns(_volume_spec()) == {}
    refused = predictors.predicted_columns(_cuda_volume(roi=(24, 16, 16)))  # a window unet3d cannot run
    assert set(refused) == {"predicted_error"} and "ValueError" in refused["predicted_error"]


def test_measure_volume_puts_the_prediction_columns_on_its_row(monkeypatch, tmp_path):
    from harness.bench import volume

    monkeypatch.setattr(volume, "predicted_columns", lambda spec: {"predicted_peak_mb": 12.34, "predicted_floor_mb": 5.0,
                                                                   "predicted_domain": "fitted"})
    m = measure(_volume_spec(rounds=1, blocks=1))
    assert m.error == "" and m.extra["predicted_peak_mb"] == 12.34
    store = RunStore(tmp_path / "run")
    store.append(m, capture())
    row = next(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert (row["predicted_peak_mb"], row["predicted_floor_mb"], row["predicted_domain"]) == ("12.3", "5.0", "fitted")
