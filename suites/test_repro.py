"""Reproducible training (harness.repro, issue 26; docs/repro.md): the docstring parser, the operator tracer and
its CUDA prediction, run-to-run in fresh processes, planted nondeterminism, batch invariance, deterministic
mode's raise path, and the command's refusals. Tiny models and sizes: the module runs in well under a minute
on 2 cores."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from harness.bench.spec import BenchSpec
from harness.catalog.user import register_reference
from harness.cli import main
from harness.options import InputFileError
from harness.report import reproducibility
from harness.repro import deterministic, documented
from harness.repro.deterministic import agreement, check
from harness.repro.deviation import SCALE_FLOOR, anomaly, compare_state
from harness.repro.documented import DocstringFormatError, parse_entries, raising_on_cuda
from harness.repro.render import (deterministic_text, markdown, prediction_loss_text, prediction_network_text,
                                  setting_text, table)
from harness.repro.run import findings
from harness.repro.runtorun import run_to_run
from harness.repro.settings import batch_invariance, measure
from harness.repro.steps import StepError, loss_variant, raised_operator, train_steps, watching_losses
from harness.repro.trace import predict, trace_step

REPO = Path(__file__).resolve().parent.parent

NETS = '''
import os
import torch
from torch import nn


class Plain(nn.Module):
    """Convolutions and a mean: a classifier whose step raises nothing documented."""
    def __init__(self, in_channels=1, classes=3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, classes, 1))
    def forward(self, x):
        return self.conv(x).mean((2, 3, 4))


def plain(in_channels=1):
    return Plain(in_channels)
plain.example_input = (1, 1, 8, 8, 8)


def voxels(in_channels=1):
    """Per-voxel output: cross-entropy over voxels (nll_loss2d) is the only documented operator."""
    return nn.Sequential(nn.Conv3d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 1))
voxels.example_input = (1, 1, 8, 8, 8)


class Noisy(nn.Module):
    """Randomness no seed controls: a generator seeded from the operating system."""
    def __init__(self):
        super().__init__()
        self.net = Plain()
    def forward(self, x):
        if x.device.type == "meta":  # probing the envelope: shapes only
            return self.net(x)
        generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(7), "little"))
        return self.net(x + 1e-2 * torch.rand(x.shape, generator=generator))


def noisy():
    return Noisy()
noisy.example_input = (1, 1, 8, 8, 8)


class Put(nn.Module):
    """put_ (accumulate=False) raises under deterministic mode on every device."""
    def __init__(self):
        super().__init__()
        self.net = Plain()
    def forward(self, x):
        x = x.clone()
        x.put_(torch.tensor([0]), torch.tensor([1.0]))
        return self.net(x)


def put():
    return Put()
put.example_input = (1, 1, 8, 8, 8)


class Mixing(nn.Module):
    """Eval-mode output that depends on the other samples of the batch."""
    def __init__(self):
        super().__init__()
        self.net = Plain()
    def forward(self, x):
        return self.net(x - x.mean(0, keepdim=True))


def mixing():
    return Mixing()
mixing.example_input = (1, 1, 8, 8, 8)


def batchnorm():
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.Conv3d(4, 2, 1))
batchnorm.example_input = (1, 1, 8, 8, 8)


class Documented(nn.Module):
    """A classifier (its loss, nll_loss_forward, raises nothing) with one operator that torch documents as raising
    under deterministic mode on CUDA, in its forward or its backward; it runs on the CPU."""
    def __init__(self, op):
        super().__init__()
        self.op, self.pre, self.net = op, nn.Conv3d(1, 1, 3, padding=1), Plain()
    def forward(self, x):
        x = self.pre(x)  # an activation that requires grad: the operator's backward runs
        if self.op == "avgpool":
            x = nn.functional.avg_pool3d(x, 2)
        elif self.op == "adaptive":
            x = x + nn.functional.adaptive_avg_pool3d(x, 2).mean()
        elif self.op == "reflect":
            x = nn.functional.pad(x, (1, 1, 1, 1, 1, 1), mode="reflect")
        elif self.op == "trilinear":
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="trilinear")
        elif self.op == "cumsum":
            x = x.cumsum(2)
        return self.net(x)


def _documented(op):
    def build():
        return Documented(op)
    build.example_input = (1, 1, 8, 8, 8)
    return build


doc_avgpool, doc_adaptive, doc_reflect, doc_trilinear, doc_cumsum = map(
    _documented, ("avgpool", "adaptive", "reflect", "trilinear", "cumsum"))
'''
DOCUMENTED = {"avgpool": "avg_pool3d_backward", "adaptive": "_adaptive_avg_pool3d_backward",
              "reflect": "reflection_pad3d_backward", "trilinear": "upsample_trilinear3d_backward", "cumsum": "cumsum"}


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("repro") / "repro_nets.py"
    path.write_text(textwrap.dedent(NETS))
    names = ("plain", "voxels", "noisy", "put", "mixing", "batchnorm", *(f"doc_{op}" for op in DOCUMENTED))
    refs = {name: f"{path}:{name}" for name in names}
    return {name: (ref, register_reference(ref)) for name, ref in refs.items()}


def tiny(name: str, batch: int = 2) -> BenchSpec:
    return BenchSpec(name, (1, 8, 8, 8), batch, "train")


# --- the documented list, from the installed torch -------------------------------------------------------
def test_the_docstring_parser_finds_the_documented_operators_of_the_installed_torch():
    entries = parse_entries(documented.docstring())
    subjects = {e.subject for e in entries}
    assert {"torch.nn.AvgPool3d", "torch.nn.AdaptiveAvgPool3d", "torch.nn.functional.interpolate",
            "torch.nn.NLLLoss"} <= subjects
    interpolate = next(e for e in entries if e.subject == "torch.nn.functional.interpolate")
    assert "trilinear" in interpolate.items and interpolate.backward_only
    ops = {op.aten for op in raising_on_cuda()}
    assert {"upsample_trilinear3d_backward", "avg_pool3d_backward", "_adaptive_avg_pool3d_backward",
            "nll_loss2d_forward"} <= ops
    for name in ops:  # every mapped name is a real aten operator of this torch
        assert hasattr(torch.ops.aten, name), name


def test_the_mapping_table_matches_the_installed_torchs_list():
    """A torch whose list gains a module entry, or drops one the table maps, fails here: update MODULE_OPS."""
    entries = parse_entries(documented.docstring())
    assert documented.unmapped(entries) == []
    assert documented.stale(entries) == []


def test_a_changed_docstring_format_fails_loudly():
    with pytest.raises(DocstringFormatError):
        parse_entries("Sets whether PyTorch operations must use deterministic algorithms.")
    header = "The following normally-nondeterministic operations will throw a\n    :class:`RuntimeError` when ``mode=True``:\n\n"
    with pytest.raises(DocstringFormatError):
        parse_entries(header + "        - torch.foo, now in another format\n\n    Next paragraph.\n")
    added = documented.docstring().replace("* :class:`torch.nn.AvgPool3d`", "* :class:`torch.nn.NewPool9d` x\n        "
                                           "* :class:`torch.nn.AvgPool3d`")
    with pytest.raises(DocstringFormatError, match="NewPool9d"):
        raising_on_cuda(added)


# --- the tracer and the prediction -------------------------------------------------------------------------
def test_the_tracer_predicts_that_the_trilinear_unet_raises_on_cuda_in_its_backward():
    prediction = predict(BenchSpec("unet3d-trilinear", (1, 16, 16, 16), 2, "train")).record()
    assert prediction["raises_on_cuda"] is True and prediction["traced_on"] == "meta"
    by_op = {op["aten"]: op for op in prediction["operators"]}
    assert by_op["upsample_trilinear3d_backward"]["phase"] == "backward"
    assert by_op["upsample_trilinear3d_backward"]["in"] == "network"
    assert "interpolate" in by_op["upsample_trilinear3d_backward"]["documented"]


def test_the_tracer_finds_nothing_raising_for_a_plain_conv_net(nets):
    plain = predict(tiny(nets["plain"][1])).record()
    assert plain["raises_on_cuda"] is False and plain["operators"] == [] and plain["ops_traced"] > 5
    voxels = predict(tiny(nets["voxels"][1])).record()  # per voxel: only the loss's nll_loss2d, not the network
    assert [(op["aten"], op["in"]) for op in voxels["operators"]] == [("nll_loss2d_forward", "loss or optimizer")]


# --- run-to-run in fresh processes ------------------------------------------------------------------------
def test_two_seeded_runs_in_fresh_processes_are_bitwise_equal_under_deterministic_mode(nets):
    ref, name = nets["plain"]
    result, _ = run_to_run(tiny(name), 2, deterministic=True, models=(ref,))
    assert result["error"] == "" and result["equal"] is True
    assert [r["step"] for r in result["per_step"]] == [1, 2]
    assert all(r["loss_equal"] and r["weights_equal"] and r["weights_rel"] == 0 for r in result["per_step"])


def test_planted_randomness_no_seed_controls_is_reported_with_its_deviation(nets):
    ref, name = nets["noisy"]
    result, _ = run_to_run(tiny(name), 2, deterministic=False, models=(ref,))
    assert result["error"] == "" and result["equal"] is False
    step = result["per_step"][0]
    assert not step["weights_equal"] and step["weights_max_abs"] > 0 and 0 < step["weights_rel"] < 1
    assert step["weights_rel_tensor"] and step["tensors_differing"] >= 1
    record = {"device": "cpu", "variants": [{"model": name, "run_to_run": result}]}
    assert any("differ" in f for f in findings(record))  # a finding: exit 1


# --- deterministic mode: the raise path and the prediction's check (fakes for CUDA) -------------------------
def test_a_step_that_raises_under_deterministic_mode_names_its_operator(nets):
    ref, name = nets["put"]
    result = check(tiny(name), 1, 1, models=(ref,))
    assert result["outcome"] == "raised" and result["operator"] == "put_" and result["ratio"] is None
    assert "finding" not in result and any("put_" in f for f in findings(
        {"device": "cpu", "variants": [{"model": name, "deterministic": result}]}))


def test_the_cuda_outcome_is_held_against_the_prediction():
    error = RuntimeError("avg_pool3d_backward_cuda does not have a deterministic implementation, but you set "
                         "'torch.use_deterministic_algorithms(True)'.")
    assert raised_operator(error) == "avg_pool3d_backward_cuda" and raised_operator(RuntimeError("oom")) == ""
    assert agreement("cuda", True, "x", {"raises_on_cuda": True}) == "agrees"
    assert agreement("cuda", False, "", {"raises_on_cuda": True}) == "disagrees"
    assert agreement("cpu", True, "x", {"raises_on_cuda": True}).startswith("not checked")
    fake = {"device": "cuda", "variants": [{"model": "m", "prediction": {"raises_on_cuda": True}, "deterministic": {
        "outcome": "ran", "operator": "", "error": "", "bitwise_equal": True, "prediction": "disagrees"}}]}
    assert any("prediction" in f for f in findings(fake))


# --- what changes a result --------------------------------------------------------------------------------
def test_batch_invariance_holds_for_batchnorm_in_eval_mode_and_fails_for_a_model_mixing_samples(nets):
    clean = batch_invariance(tiny(nets["batchnorm"][1]))
    assert clean["outputs_rel"] <= 1e-5
    rows = measure(tiny(nets["mixing"][1]), ("batch-invariance",))
    assert rows[0]["verdict"].startswith("beyond") and rows[0]["outputs_rel"] > 1e-3


def test_settings_rows_say_what_moved_and_what_did_not_run(nets):
    rows = {r["setting"]: r for r in measure(tiny(nets["plain"][1]), ("threads-1", "bf16", "compile",
                                                                       "cudnn-benchmark"),
                                             {"compile": "not run: off"})}
    assert rows["bf16"]["status"] == "measured" and rows["bf16"]["outputs_rel"] > 0
    assert rows["compile"]["status"] == "not run: off"
    assert rows["cudnn-benchmark"]["status"].startswith("not run")
    result = {"device": "cpu", "options": {}, "environment": {}, "predictions": [], "findings": [],
              "variants": [{"model": "m", "spec": tiny("m").record(), "settings": list(rows.values())}]}
    assert "bf16" in table(result) and "## What changes a result" in markdown(json.loads(json.dumps(result)))


# --- the command's refusals (exit 2, nothing written) ------------------------------------------------------
@pytest.mark.parametrize("argv", [["--steps", "0"], ["--checks", "run-to-run,bogus"], ["--settings", "fast"],
                                  ["--models", "no-such-variant*"], ["--device", "cuda"], ["--batch", "-1"],
                                  ["--timeout", "0"], ["--models", "unet3d", "--size", "x"]])
def test_bad_options_exit_2_before_anything_runs(argv, tmp_path, capsys):
    if argv == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["repro", "--runs-root", str(tmp_path / "runs"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_an_existing_run_id_is_refused(tmp_path, capsys):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "repro.json").write_text("{}")
    assert main(["repro", "--runs-root", str(tmp_path / "runs"), "--run-id", "taken"]) == 2
    assert "already holds a run" in capsys.readouterr().err


# --- CUDA prediction: the network's operators and the loss's apart; the per-element loss -------------------------
def test_the_cuda_prediction_tells_the_network_from_the_loss_and_offers_a_loss_that_runs():
    """On CUDA the bench's cross-entropy over voxels raises (nll_loss2d_forward, reduced with atomics): every
    segmentation step does. The network's part still tells unet3d (runs) from unet3d-trilinear (raises)."""
    plain, trilinear = (predict(BenchSpec(name, (1, 16, 16, 16), 2, "train")).record()
                        for name in ("unet3d", "unet3d-trilinear"))
    for record in (plain, trilinear):
        assert record["raises_on_cuda"] is True and record["loss_raises"] is True
        assert prediction_loss_text(record) == "raises: nll_loss2d_forward; per-element loss: runs"
    assert plain["network_raises"] is False and prediction_network_text(plain) == "runs"
    assert plain["per_element_loss"]["raises_on_cuda"] is False
    assert trilinear["network_raises"] is True
    assert prediction_network_text(trilinear) == "raises: upsample_trilinear3d_backward"
    assert [op["aten"] for op in trilinear["per_element_loss"]["operators"]] == ["upsample_trilinear3d_backward"]


@pytest.mark.parametrize("op", sorted(DOCUMENTED))
def test_a_user_models_documented_operator_is_named_by_the_cpu_prediction(nets, op):
    """Hidden case: a user model with an operator torch documents as raising under deterministic mode on CUDA."""
    record = predict(tiny(nets[f"doc_{op}"][1])).record()
    assert record["raises_on_cuda"] is True and record["network_raises"] is True and record["loss_raises"] is False
    assert [(o["aten"], o["in"]) for o in record["operators"]] == [(DOCUMENTED[op], "network")]
    phase = record["operators"][0]["phase"]  # cumsum's backward is a cumsum too
    assert "forward" in phase if op == "cumsum" else phase == "backward"
    assert DOCUMENTED[op] in prediction_network_text(record)


def test_the_per_element_loss_is_the_same_loss_without_the_reduced_kernel(nets):
    spec = tiny(nets["voxels"][1])
    bench, per_element = (train_steps(spec, 1, loss=loss)[0].loss for loss in ("bench", "per-element"))
    assert torch.allclose(bench, per_element, rtol=1e-6, atol=0)
    watch = raising_on_cuda()
    traces = {loss: trace_step(spec, "meta", watch, loss=loss).hits for loss in ("bench", "per-element")}
    assert "nll_loss2d_forward" in traces["bench"] and "nll_loss2d_forward" not in traces["per-element"]
    criterion = torch.nn.CrossEntropyLoss()
    with loss_variant("per-element"), pytest.raises((RuntimeError, IndexError)):  # a forward that raises: restored all the same
        criterion(torch.zeros(2, 3), torch.tensor([0, 5]))
    assert criterion.reduction == "mean"


def test_an_error_inside_the_loss_is_told_from_one_in_the_network(nets):
    class Raising(torch.nn.modules.loss._Loss):
        def forward(self, a, b):
            raise RuntimeError("nll_loss2d_forward_out_cuda_template does not have a deterministic implementation")

    with watching_losses() as watch, pytest.raises(RuntimeError):
        Raising()(torch.zeros(1), torch.zeros(1))
    assert watch.inside == "Raising"
    with pytest.raises(StepError) as raised:  # put_ raises under deterministic mode on every device
        train_steps(tiny(nets["put"][1]), 1, deterministic=True)
    assert raised.value.where == "network or optimizer" and raised_operator(raised.value) == "put_"


def _fake_runs(outcomes: dict):
    """run_to_run stand-in: per loss, (raised operator, where, bitwise equal)."""
    def fake(spec, steps, deterministic, models=(), time_rounds=0, timeout_s=0, loss="bench"):
        operator, where, equal = outcomes[loss]
        comparison = {"loss": loss, "raised_operator": operator, "raised_in": where, "equal": None if operator else equal,
                      "error": f"RuntimeError: {operator} does not have a deterministic implementation" if operator else "",
                      "per_step": [], "steps": steps, "deterministic": True}
        timing = None if operator else {"ratio": 1.25, "rounds": time_rounds, "default_ms": 4.0, "deterministic_ms": 5.0}
        return comparison, timing
    return fake


def test_on_cuda_a_step_raising_in_its_loss_is_checked_again_with_the_per_element_loss(monkeypatch):
    """The GPU logic with fakes: the loss raises as predicted, the per-element step runs (or raises in the network)
    and is held against its own prediction."""
    spec = BenchSpec("unet3d", (1, 16, 16, 16), 2, "train", "cuda")
    prediction = {"raises_on_cuda": True, "per_element_loss": {"raises_on_cuda": False}}
    monkeypatch.setattr(deterministic, "run_to_run", _fake_runs({
        "bench": ("nll_loss2d_forward_out_cuda_template", "loss", None), "per-element": ("", "", True)}))
    result = check(spec, 2, 3, prediction=prediction)
    assert result["outcome"] == "raised" and result["raised_in"] == "loss" and result["prediction"] == "agrees"
    assert "reduction='none'" in result["way_out"]
    per_element = result["per_element_loss"]
    assert per_element["outcome"] == "ran" and per_element["ratio"] == 1.25 and per_element["prediction"] == "agrees"
    assert deterministic_text(result) == ("raises (nll_loss2d_forward_out_cuda_template, in the loss); per-element "
                                          "loss: runs, x1.25 step time, bitwise equal")
    record = {"device": "cuda", "variants": [{"model": "unet3d", "prediction": prediction, "deterministic": result}]}
    assert findings(record) == []

    monkeypatch.setattr(deterministic, "run_to_run", _fake_runs({
        "bench": ("nll_loss2d_forward_out_cuda_template", "loss", None),
        "per-element": ("upsample_trilinear3d_backward_out_cuda", "network or optimizer", None)}))
    result = check(spec, 2, 3, prediction=prediction)
    assert result["per_element_loss"]["prediction"] == "disagrees"
    record["variants"][0]["deterministic"] = result
    assert any("per-element loss" in f and "prediction" in f for f in findings(record))


# --- values no rounding explains (the bf16 gradient of about 4e29) ------------------------------------------------
def test_an_absurd_or_non_finite_value_is_reported_as_such_and_a_zero_scale_cannot_blow_up():
    ref = {"a.weight": torch.full((4,), 0.5), "a.bias": torch.zeros(4)}
    assert anomaly(ref, {"a.weight": torch.full((4,), 0.6), "a.bias": torch.zeros(4)}) == ""
    absurd = anomaly(ref, {"a.weight": torch.tensor([0.5, 4e29, 0.5, 0.5]), "a.bias": torch.zeros(4)})
    assert absurd.startswith("absurd") and "a.weight" in absurd and "4e+29" in absurd
    assert anomaly(ref, {"a.weight": torch.tensor([0.5, float("nan"), 0.5, 0.5]),
                         "a.bias": torch.zeros(4)}).startswith("non-finite: 1 ")
    # a tensor that is zero in the reference: its deviation is scaled by the dict's largest magnitude, not by 0
    compared = compare_state(ref, {"a.weight": ref["a.weight"], "a.bias": torch.full((4,), 1e-9)})
    assert compared["rel"] == pytest.approx(1e-9 / (SCALE_FLOOR * 0.5))


def test_a_setting_with_an_absurd_gradient_is_measured_again_and_reported(nets, monkeypatch):
    from harness.repro import settings

    real, planted = settings._training, []

    def training(spec, threads=None):
        result = real(spec, threads)
        if spec.precision == "bf16" and not planted:  # once: as the anomaly was seen once
            planted.append(True)
            name = next(iter(result["grads"]))
            result["grads"][name] = result["grads"][name].clone().fill_(4e29)
        return result

    monkeypatch.setattr(settings, "_training", training)
    row = measure(tiny(nets["plain"][1]), ("bf16",))[0]
    assert row["verdict"] == "beyond: grads" and row["grads_rel"] > 1e20
    assert row["anomaly"].startswith("gradients absurd") and "did not recur" in row["anomaly"]
    assert row["rerun"]["anomaly"] == "" and row["rerun"]["grads_rel"] < 1
    record = {"device": "cpu", "variants": [{"model": "plain", "settings": [row]}]}
    assert any("absurd" in f for f in findings(record))


# --- the report's page, from a real run of the command --------------------------------------------------------------
def _row(page: str, model: str) -> dict:
    lines = [line for line in page.splitlines() if line.startswith("| model |")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = next(line for line in page.splitlines() if line.startswith(f"| {model} |"))
    return dict(zip(header, (c.strip() for c in row.strip("|").split("|"))))


def test_a_clean_user_model_passes_and_the_report_page_follows_the_committed_record(nets, tmp_path, capsys):
    """Hidden case: a clean model (exit 0, no finding). Then the report's page, rebuilt from that run's
    repro.json, and again from a newer run whose record says otherwise: the cells follow the record."""
    ref, name = nets["plain"]
    root = tmp_path / "repro"
    assert reproducibility.write(tmp_path, root) == []  # no run yet: no page
    assert main(["repro", "--model", ref, "--steps", "1", "--rounds", "1", "--predict", "none", "--runs-root",
                 str(root), "--run-id", "clean", "-q"]) == 0
    capsys.readouterr()
    record = json.loads((root / "clean" / "repro.json").read_text())
    assert record["findings"] == [] and record["started"]
    [page_path] = reproducibility.write(tmp_path, root)
    page = page_path.read_text()
    cells = _row(page, name)
    variant = record["variants"][0]
    assert cells["run-to-run (default mode)"] == "bitwise equal (1 step)"
    ratio = variant["deterministic"]["ratio"]
    assert cells["deterministic mode (cpu)"] == f"runs, x{ratio:.2f} step time, bitwise equal"
    assert cells["CUDA deterministic mode, predicted: network"] == "runs"
    for row in variant["settings"]:
        assert cells[row["setting"]] == setting_text(row)
    assert "`clean`" in page and record["environment"]["torch"] in page and "None." in page
    assert "| bf16 | 0.05 | 0.01 | 1 |" in page  # the tolerances as the run recorded them

    newer = json.loads(json.dumps(record))
    newer["started"] = "2999-01-01T00:00:00+00:00"
    r2r = newer["variants"][0]["run_to_run"]
    r2r["equal"] = False
    r2r["per_step"][-1].update(weights_rel=0.25, loss_rel=0.125, weights_equal=False, loss_equal=False)
    newer["findings"] = ["planted finding"]
    (root / "a-later-run").mkdir()
    (root / "a-later-run" / "repro.json").write_text(json.dumps(newer))
    page = reproducibility.write(tmp_path, root)[0].read_text()
    assert _row(page, name)["run-to-run (default mode)"] == "differ: weights 0.25 rel, loss 0.12 rel after step 1"
    assert "`a-later-run`" in page and "- planted finding" in page


def test_a_damaged_repro_run_is_an_input_error(tmp_path):
    (tmp_path / "repro" / "torn").mkdir(parents=True)
    (tmp_path / "repro" / "torn" / "repro.json").write_text('{"kind": "repro", "device"')
    with pytest.raises(InputFileError, match="torn"):
        reproducibility.write(tmp_path, tmp_path / "repro")
    (tmp_path / "repro" / "torn" / "repro.json").write_text('{"kind": "bench"}')
    with pytest.raises(InputFileError, match="not a repro run"):
        reproducibility.write(tmp_path, tmp_path / "repro")
    assert not (tmp_path / reproducibility.PAGE).exists()


def test_the_page_module_imports_where_torch_cannot_be_imported(tmp_path):
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('torch is not installed here (blocked by the test)')\n")
    code = ("import harness.report.reproducibility, sys\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
