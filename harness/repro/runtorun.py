"""Run-to-run: the same k seeded training steps in two fresh processes (harness.repro.worker, started with this
Python), compared after every step: the loss and every parameter and buffer bitwise equal, or else the largest
deviation, absolute and relative to the tensor's own scale, and the tensor where it occurs."""
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


def run_worker(spec: BenchSpec, steps: int, deterministic: bool, models=(), time_rounds: int = 0,
               timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """One fresh process's answer (see harness.repro.worker); ``error`` set when the process failed."""
    with tempfile.TemporaryDirectory(prefix="harness-repro-") as folder:
        request_path, out = Path(folder) / "request.json", Path(folder) / "answer.pt"
        request_path.write_text(json.dumps({"spec": spec.record(), "models": list(models), "steps": steps,
                                            "deterministic": deterministic, "time_rounds": time_rounds,
                                            "out": str(out)}))
        env = dict(os.environ)
        if spec.device == "cuda":
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        try:
            done = subprocess.run([sys.executable, "-m", "harness.repro.worker", str(request_path)],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return _failed(f"the worker process ran past {timeout_s:g} s")
        if not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            return _failed(f"the worker process failed (exit {done.returncode}): {tail[0]}")
        return torch.load(out, weights_only=False)


def _failed(message: str) -> dict:
    return {"losses": [], "states": [], "raised_operator": "", "error": message, "timing": None}


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


def summarize(a: dict, b: dict, steps: int, deterministic: bool) -> dict:
    """The check's plain-data result from two answers."""
    result = {"deterministic": deterministic, "steps": steps, "equal": None, "per_step": [], "error": "",
              "raised_operator": a.get("raised_operator") or b.get("raised_operator") or ""}
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


def run_to_run(spec: BenchSpec, steps: int, deterministic: bool = False, models=(), time_rounds: int = 0,
               timeout_s: float = WORKER_TIMEOUT_S) -> tuple[dict, dict | None]:
    """Two fresh processes; (the comparison, the first process's timing when ``time_rounds``)."""
    a = run_worker(spec, steps, deterministic, models, time_rounds, timeout_s)
    if a.get("error") and a.get("raised_operator"):  # raises in this mode: a second process would too
        return summarize(a, a, steps, deterministic), None
    b = run_worker(spec, steps, deterministic, models, 0, timeout_s)
    return summarize(a, b, steps, deterministic), a.get("timing")
