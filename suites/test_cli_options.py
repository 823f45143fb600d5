"""Bad options are refused by every entry point before anything is built: one paragraph naming the
problem and the way out, exit status 2, no traceback, nothing written."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, "-m", "harness", "bench", "--profile", "smoke"]

# (id, command after the runs root is filled in, words the message must hold)
CASES = [
    ("bench-models-nosuch", BENCH + ["--models", "nosuch"], ["'nosuch' matches no variant", "Way out"]),
    ("bench-resume-missing", BENCH + ["--resume", "does-not-exist"], ["no run of that name", "Way out"]),
    ("bench-rounds-zero", BENCH + ["--rounds", "0"], ["--rounds must be an integer of at least 1"]),
    ("bench-rounds-negative", BENCH + ["--rounds", "-3"], ["--rounds must be an integer of at least 1"]),
    ("bench-warmup-negative", BENCH + ["--warmup", "-1"], ["--warmup must be an integer of at least 0"]),
    ("bench-threads-zero", BENCH + ["--threads", "0"], ["--threads must be an integer of at least 1"]),
    ("bench-find-max-batch-cpu", BENCH + ["--device", "cpu", "--find-max-batch"], ["--find-max-batch needs --device cuda"]),
    ("bench-two-run-names", BENCH + ["--run-id", "a", "--resume", "b"], ["name two runs"]),
    ("validate-pairs-zero", [sys.executable, "-m", "harness", "validate", "--device", "cpu", "--pairs", "0"],
     ["--pairs must be an integer of at least 1"]),
    ("regress-models-nosuch", [sys.executable, "-m", "harness", "regress", "--deterministic-only", "--models", "x*"],
     ["'x*' matches no variant"]),
    ("regress-blocks-zero", [sys.executable, "-m", "harness", "regress", "--blocks", "0"], ["--blocks must be"]),
    ("regress-modes-unknown", [sys.executable, "-m", "harness", "regress", "--modes", "infer"], ["--modes takes"]),
    ("report-missing-run", [sys.executable, "-m", "harness", "report", "/nonexistent/run"], ["/nonexistent/run", "Way out"]),
    ("show-unknown-model", [sys.executable, "-m", "harness", "show", "nosuch"], ["unknown model 'nosuch'"]),
    ("bench-model-no-file", BENCH + ["--model", "/nonexistent/nets.py:build"], ["no such file", "Way out"]),
    ("bench-model-no-function", BENCH + ["--model", "harness.catalog.peers:nosuch"], ["has no 'nosuch'", "Way out"]),
    ("bench-model-not-a-module", BENCH + ["--model", "harness.catalog.peers:available"], ["failed with TypeError"]),
    ("bench-set-unknown-argument", BENCH + ["--models", "unet3d", "--set", "widthx=3"], ["unknown constructor"]),
    ("bench-exec-mode-cudagraphs-cpu", BENCH + ["--device", "cpu", "--exec-mode", "cudagraphs"],
     ["--exec-mode cudagraphs needs --device cuda"]),
    ("regress-model-no-module", [sys.executable, "-m", "harness", "regress", "--deterministic-only", "--model", "nosuchmod:f"],
     ["no such module"]),
    # The module entry points still work, under the same contract.
    ("module-validate-pairs-zero", [sys.executable, "-m", "harness.evidence.validate", "--device", "cpu", "--pairs", "0"],
     ["--pairs must be an integer of at least 1"]),
    ("module-report-missing-run", [sys.executable, "-m", "harness.report", "/nonexistent/run"], ["/nonexistent/run", "Way out"]),
]
try:
    import torch
    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False
if not HAS_CUDA:  # on a GPU machine these are valid requests, not errors
    CASES += [
        ("bench-device-cuda", BENCH + ["--device", "cuda"], ["needs a CUDA GPU", "--device cpu"]),
        ("validate-device-cuda", [sys.executable, "-m", "harness", "validate", "--device", "cuda"], ["needs a CUDA GPU"]),
    ]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Run every case at once (each is a Python start-up that imports torch: in parallel they take the
    time of the slowest, not of all together)."""
    results_before = _tree(REPO / "results")
    started = {}
    for case_id, command, _ in CASES:
        runs = tmp_path_factory.mktemp(case_id)
        if command[:4] == BENCH[:4]:
            command = command + ["--runs-root", str(runs)]
        started[case_id] = (runs, subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True))
    finished = {case_id: (process.wait(timeout=600), process.stdout.read(), _tree(runs))
                for case_id, (runs, process) in started.items()}
    return finished, results_before == _tree(REPO / "results")


@pytest.mark.parametrize("case_id, words", [(case[0], case[2]) for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_option_exits_2_with_one_paragraph_and_writes_nothing(outcomes, case_id, words):
    finished, results_untouched = outcomes
    status, output, written = finished[case_id]
    assert status == 2, output
    assert "Traceback" not in output, output
    for word in words:
        assert word in output, output
    assert written == [] and results_untouched
