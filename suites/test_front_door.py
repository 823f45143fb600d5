"""The front door (issue 24): ``python -m harness <command>`` for every command, one exit contract.

Every command's --help exits 0 and states the exit codes; a bad option exits 2 with one paragraph and no
traceback; an unexpected error exits 4 (never 1) with one line naming the log file that holds the
traceback; ``bench`` maps pytest's statuses onto the contract and keeps the project's pytest settings;
``compare`` and ``report`` never import torch. In-process ``main(argv)`` calls where the command imports
torch anyway, subprocesses (started together) only where a fresh interpreter is the point."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.options import EXIT_CODES_HELP, InputFileError

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "results" / "runs"
SMALL_RUN = RUNS / "20261126T051742Z-cpu-compare"


def _call(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_paragraph(err: str) -> bool:
    text = err.strip()
    return text.startswith("error: ") and "\n\n" not in text and "Traceback" not in err


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_help_with_its_options_and_the_exit_codes(command, capsys):
    code, out, err = _call([command, "--help"], capsys)
    assert code == 0, err
    assert out.startswith(f"usage: python -m harness {command}"), out[:200]
    assert "exit status: 0" in out and "2 wrong input" in out, out[-600:]
    assert "Traceback" not in out + err


def test_bench_help_leads_with_the_harness_options_and_points_at_pytest(capsys):
    code, out, _ = _call(["bench", "--help"], capsys)
    assert code == 0 and "pytest.main()" not in out and len(out.splitlines()) < 150
    assert out.index("--profile") < out.index("--help-pytest` lists them all")
    assert "130" in out  # an interruption is neither a finding nor wrong input


def test_the_top_level_help_lists_every_command(capsys):
    code, out, _ = _call(["--help"], capsys)
    assert code == 0 and EXIT_CODES_HELP in out
    for command in cli.COMMANDS:
        assert f"\n  {command} " in out, command
    assert _call([], capsys)[0] == 2  # no command: the same text, as a usage error


BAD = [
    ("unknown-command", ["nosuch"], ["not a command", "list, show, check"]),
    ("list-unknown-option", ["list", "--bogus"], ["unrecognized arguments: --bogus", "--help"]),
    ("show-unknown-model", ["show", "nosuch"], ["unknown model 'nosuch'"]),
    ("check-device-tpu", ["check", "unet3d", "--input", "1,1,32,32,32", "--device", "tpu"], ["'tpu'", "'cpu'", "'cuda'"]),
    ("check-no-input", ["check", "unet3d"], ["--input"]),
    ("plan-volume-smaller-than-a-patch", ["plan", "--gpu-memory", "24GiB", "--models", "unet3d", "--volume", "8,8,8"],
     ["--volume 8,8,8", "Way out"]),
    ("plan-patch-larger-than-the-volume", ["plan", "--gpu-memory", "24GiB", "--models", "unet3d", "--volume",
                                           "64,64,32", "--patch", "64"], ["larger than --volume", "Way out"]),
    ("plan-mode-unknown", ["plan", "--mode", "nope"], ["invalid choice: 'nope'"]),
    ("compare-missing-runs", ["compare", "/nonexistent/a", "/nonexistent/b"], ["BASE", "Way out"]),
    ("report-missing-run", ["report", "/nonexistent/run"], ["/nonexistent/run"]),
    ("regress-blocks-zero", ["regress", "--blocks", "0"], ["--blocks must be"]),
    ("launch-shards-zero", ["launch", "--shards", "0"], ["--shards must be"]),
    ("merge-missing-run", ["merge", "/nonexistent/a", "--out", "merged"], ["/nonexistent/a"]),
    ("merge-no-out", ["merge", "a"], ["--out"]),
    ("claims-only-unknown", ["claims", "--only", "nope"], ["invalid choice: 'nope'"]),
    ("claims-out-unwritable", ["claims", "--out", "/proc/nope/claims.json"], ["--out /proc/nope/claims.json",
                                                                              "cannot be written"]),
    ("validate-pairs-zero", ["validate", "--device", "cpu", "--pairs", "0"], ["--pairs must be"]),
    ("validate-device-tpu", ["validate", "--device", "tpu"], ["invalid choice: 'tpu'"]),
]


@pytest.mark.parametrize("argv, words", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_option_of_any_command_exits_2_in_one_paragraph(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _tree(REPO / "results")
    code, out, err = _call(argv, capsys)
    assert code == 2 and out == "" and _one_paragraph(err), err
    for word in words:
        assert word in err, err
    assert _tree(tmp_path) == [] and _tree(REPO / "results") == before  # nothing written


def test_check_still_answers_a_supported_input(capsys):
    code, out, err = _call(["check", "unet3d", "--input", "1,1,32,32,32", "--device", "cuda"], capsys)
    assert code == 0 and out.strip() == "(1, 2, 32, 32, 32)" and err == ""


def test_plan_never_plans_a_patch_larger_than_the_volume(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("UNET3D_BENCH_CACHE", str(tmp_path))
    code, out, err = _call(["plan", "--gpu-memory", "24GiB", "--models", "unet3d", "--volume", "40,40,24", "--mode",
                            "inference", "--precision", "fp32", "--json", "--jobs", "1"], capsys)
    assert code == 0, err
    import json

    (row,) = json.loads(out)
    assert row["largest_patch"]["patch"] == [32, 32, 16] and row["patch"] == [32, 32, 16]


# --- unexpected errors: one line, a log file, exit 4 --------------------------------------------------------
def _boom(argv):
    raise RuntimeError("boom: something the harness did not expect")


def test_an_unexpected_error_exits_4_with_one_line_and_the_traceback_in_a_log(capsys, tmp_path, monkeypatch):
    import harness.evidence.compare as compare

    monkeypatch.setenv(cli.ERROR_LOG_DIR, str(tmp_path))
    monkeypatch.setattr(compare, "main", _boom)
    code, out, err = _call(["compare", "a", "b"], capsys)
    assert code == 4 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    (log,) = tmp_path.glob("harness-error-*.log")
    assert str(log) in err and "RuntimeError" in err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "boom: something" in text and "compare a b" in text


def test_an_input_file_error_from_inside_a_command_is_exit_2(capsys, monkeypatch):
    import harness.evidence.compare as compare

    def damaged(argv):
        raise InputFileError("results/runs/x/environment.json: not JSON. Way out: restore it.")

    monkeypatch.setattr(compare, "main", damaged)
    code, out, err = _call(["compare", "a", "b"], capsys)
    assert code == 2 and err == "error: results/runs/x/environment.json: not JSON. Way out: restore it.\n"


def test_ctrl_c_exits_130(capsys, monkeypatch):
    import harness.evidence.compare as compare

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "main", interrupted)
    assert _call(["compare", "a", "b"], capsys)[0] == 130


# --- bench: pytest's statuses in the contract, the project's pytest settings kept -----------------------------
class _Raised:
    def __init__(self, value):
        self.value = value


@pytest.mark.parametrize("pytest_status, interrupted, expected", [
    (0, False, 0), (1, False, 1), (2, False, 2), (2, True, 130), (3, False, 4), (4, False, 2), (5, False, 3)])
def test_bench_maps_pytest_exit_statuses_onto_the_contract(pytest_status, interrupted, expected, monkeypatch,
                                                           tmp_path, capsys):
    import pytest as real_pytest

    def fake_main(args, plugins=()):
        (outcome,) = plugins
        if interrupted:
            outcome.pytest_keyboard_interrupt(_Raised(KeyboardInterrupt()))
        elif pytest_status == 2:  # the plugin's refusal: pytest.exit(..., returncode=2)
            outcome.pytest_keyboard_interrupt(_Raised(real_pytest.exit.Exception("error: bad", returncode=2)))
        if pytest_status == 3:
            outcome.pytest_internalerror("Traceback ...\nValueError: inside pytest", None)
        return pytest_status

    monkeypatch.setenv(cli.ERROR_LOG_DIR, str(tmp_path))
    monkeypatch.setattr(real_pytest, "main", fake_main)
    assert cli.main(["bench", "--profile", "smoke"]) == expected
    if pytest_status == 3:
        (log,) = tmp_path.glob("harness-error-*.log")
        assert "ValueError: inside pytest" in log.read_text() and str(log) in capsys.readouterr().err


def test_bench_passes_path_options_as_one_word():
    assert cli._joined(["--runs-root", "/tmp/x", "--channels-last", "-k", "unet", "--benchmark-json", "b.json",
                        "--models", "unet3d"]) == ["--runs-root=/tmp/x", "--channels-last", "-k", "unet",
                                                   "--benchmark-json=b.json", "--models=unet3d"]


# --- fresh interpreters, started together ------------------------------------------------------------------
TORCH_FREE = ("import sys\nfrom harness.cli import main\nstatus = main(sys.argv[1:])\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(status)")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    report_out = tmp_path_factory.mktemp("report") / "out"
    commands = {
        "compare": [sys.executable, "-c", TORCH_FREE, "compare", str(SMALL_RUN), str(SMALL_RUN)],
        "report": [sys.executable, "-c", TORCH_FREE, "report", str(SMALL_RUN), "--out", str(report_out)],
        "bench-rootdir": [sys.executable, "-m", "harness", "bench", "--profile", "smoke", "--models", "unet3d",
                          "--runs-root", str(runs), "--benchmark-disable", "--collect-only"],
        "bench-rounds-zero": [sys.executable, "-m", "harness", "bench", "--profile", "smoke", "--rounds", "0",
                              "--runs-root", str(runs / "r")],
        "module-entry-point": [sys.executable, "-m", "harness.evidence.claims", "--help"],
    }
    started = {name: subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for name, argv in commands.items()}
    return {name: (p.wait(timeout=300), p.stdout.read()) for name, p in started.items()}, runs


@pytest.mark.parametrize("command", ["compare", "report"])
def test_compare_and_report_never_import_torch(fresh, command):
    status, output = fresh[0][command]
    assert status in (0, 1) and "torch was imported" not in output and "Traceback" not in output, output[-2000:]


def test_an_existing_runs_root_does_not_become_pytests_rootdir(fresh):
    status, output = fresh[0]["bench-rootdir"]
    assert status == 0, output[-2000:]
    assert f"rootdir: {REPO}" in output and "configfile: pyproject.toml" in output, output[:800]


def test_bench_refuses_a_bad_option_with_exit_2_and_writes_nothing(fresh):
    (status, output), runs = fresh[0]["bench-rounds-zero"], fresh[1]
    assert status == 2 and "--rounds" in output and "Traceback" not in output, output
    assert not (runs / "r").exists()


def test_module_entry_points_still_work(fresh):
    status, output = fresh[0]["module-entry-point"]
    assert status == 0 and "exit status: 0" in output, output
