"""Reproducible training (harness.repro, issue 26; docs/repro.md): the docstring parser, the operator tracer and
its CUDA prediction, run-to-run in fresh processes, planted nondeterminism, batch invariance, deterministic
mode's raise path, and the command's refusals. Tiny models and sizes: the module runs in well under a minute
on 2 cores."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from harness.bench.spec import BenchSpec
from harness.catalog.user import register_reference
from harness.cli import main
from harness.repro import documented
from harness.repro.deterministic import agreement, check
from harness.repro.documented import DocstringFormatError, parse_entries, raising_on_cuda
from harness.repro.render import markdown, table
from harness.repro.run import findings
from harness.repro.runtorun import run_to_run
from harness.repro.settings import batch_invariance, measure
from harness.repro.steps import raised_operator
from harness.repro.trace import predict

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
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("repro") / "repro_nets.py"
    path.write_text(textwrap.dedent(NETS))
    refs = {name: f"{path}:{name}" for name in ("plain", "voxels", "noisy", "put", "mixing", "batchnorm")}
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
