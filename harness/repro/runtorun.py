"""Run-to-run: the same k seeded training steps in two fresh processes (harness.repro.worker, started with this
Python), compared after every step: the loss and every parameter and buffer bitwise equal, or else the largest
deviation, absolute and relative to the tensor's own scale, and the tensor where it occurs.

One pair of processes can carry several runs (``run_pairs``: the default mode, then deterministic mode), each on
a fresh seeded workload, in the same order in both processes: starting a process and the kernels' first calls
cost more than the steps of the small default configurations.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from harness.bench.spec import BenchSpec
from harness.repro.deviation import compare_state, compare_tensor
from harness.repro.steps import CUBLAS_WORKSPACE
WORKER_TIMEOUT_S = 900


def empty_answer(error: str = "") -> dict:
    """One run's answer from a worker (harness.repro.worker) with nothing recorded; ``error``: why."""
    return {"losses": [], "states": [], "raised_operator": "", "raised_in": "", "error": error, "timing": None}


def run_worker(spec: BenchSpec, steps: int, runs: list[dict], models=(), timeout_s: float = WORKER_TIMEOUT_S
               ) -> list[dict]:
    """One fresh process's answers, one per run (see harness.repro.worker); each with ``error`` set when the
    process failed."""
    with tempfile.TemporaryDirectory(prefix="harness-repro-") as folder:
        request_path, out = Path(folder) / "request.json", Path(folder) / "answer.pt"
        request_path.write_text(json.dumps({"spec": spec.record(), "models": list(models), "steps": steps,
                                            "runs": runs, "out": str(out)}))
        env = dict(os.environ)
        if spec.device == "cuda":
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        try:
            done = subprocess.run([sys.executable, "-m", "harness.repro.worker", str(request_path)],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return [empty_answer(f"the worker process ran past {timeout_s:g} s")] * len(runs)
        if not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            return [empty_answer(f"the worker process failed (exit {done.returncode}): {tail[0]}")] * len(runs)
        answer = torch.load(out, weights_only=False)
    return answer["runs"] if not answer["error"] else [empty_answer(answer["error"])] * len(runs)


def compare_answers(a: dict, b: dict) -> list[dict]:
    """Per step: the loss and the state (parameters and buffers) of run b against run a."""
    rows = []
    for step, (loss_a, loss_b, state_a, state_b) in enumerate(zip(a["losses"], b["losses"], a["states"],
                                                                   b["states"]), start=1):
        loss = compare_tensor(loss_a, loss_b)
        state = compare_state(state_a, state_b, per_tensor_scale=True)
        rows.append({"step": step, "loss_a": float(loss_a), "loss_b": float(loss_b), "loss_equal": loss["equal"],
                     "loss_max_abs": loss["max_abs"], "loss_rel": loss["rel"], "weights_equal": state["equal"],
                     "weights_max_abs": state["max_abs"], "weights_max_abs_tensor": state["max_abs_tensor"],
                     "weights_rel": state["rel"], "weights_rel_tensor": state["rel_tensor"],
                     "tensors_differing": state["differing"], "tensors": state["tensors"]})
    return rows


def summarize(a: dict, b: dict, steps: int, deterministic: bool, loss: str = "bench") -> dict:
    """The check's plain-data result from two answers."""
    raised = a if a.get("raised_operator") or not b.get("raised_operator") else b
    result = {"deterministic": deterministic, "loss": loss, "steps": steps, "equal": None, "per_step": [], "error": "",
              "raised_operator": raised.get("raised_operator") or "", "raised_in": raised.get("raised_in") or ""}
    errors = [answer["error"] for answer in (a, b) if answer.get("error")]
    if errors:
        result["error"] = errors[0]
        return result
    result["per_step"] = compare_answers(a, b)
    if len(result["per_step"]) != steps:
        result["error"] = f"the runs recorded {len(a['losses'])} and {len(b['losses'])} of {steps} steps"
        return result
    result["equal"] = all(r["loss_equal"] and r["weights_equal"] for r in result["per_step"])
    return result


def run_pairs(spec: BenchSpec, steps: int, runs: list[dict], models=(), timeout_s: float = WORKER_TIMEOUT_S
              ) -> list[tuple[dict, dict | None]]:
    """Each run (``deterministic``, ``loss``, ``time_rounds``) in two fresh processes, in order; per run (the
    comparison, the first process's timing). A run that raised in the first process (naming an operator) is not
    repeated in the second: it would raise there too."""
    a = run_worker(spec, steps, runs, models, timeout_s)
    again = [index for index, answer in enumerate(a) if not (answer["error"] and answer["raised_operator"])]
    b = dict(zip(again, run_worker(spec, steps, [{**runs[i], "time_rounds": 0} for i in again], models, timeout_s)
                 if again else []))
    return [(summarize(a[i], b.get(i, a[i]), steps, bool(run["deterministic"]), run.get("loss", "bench")),
             a[i].get("timing")) for i, run in enumerate(runs)]


def run_to_run(spec: BenchSpec, steps: int, deterministic: bool = False, models=(), time_rounds: int = 0,
               timeout_s: float = WORKER_TIMEOUT_S, loss: str = "bench") -> tuple[dict, dict | None]:
    """One run in two fresh processes; (the comparison, the first process's timing when ``time_rounds``).
    ``loss``: the bench's, or a variant of it (harness.repro.steps.loss_variant)."""
    [result] = run_pairs(spec, steps, [{"deterministic": deterministic, "loss": loss, "time_rounds": time_rounds}],
                         models, timeout_s)
    return result
