"""Deterministic mode: with ``torch.use_deterministic_algorithms(True)`` (and, on CUDA, ``cudnn.deterministic``
and ``CUBLAS_WORKSPACE_CONFIG``), does the training step run or raise (and through which operator), what does it
cost in step time, and are two runs then bitwise equal.

The cost is a ratio measured in one process on one workload, interleaved: each round times one synchronized
step in each mode, in the order ABBA over two rounds, so that drift of the machine (clocks, other load) falls on
both sides alike; the ratio is the median deterministic step over the median default step.
"""
from __future__ import annotations

import statistics
import time

from harness.bench.spec import BenchSpec
from harness.repro.runtorun import WORKER_TIMEOUT_S, run_to_run
from harness.repro.steps import deterministic_mode


def interleaved_times(spec: BenchSpec, rounds: int) -> dict:
    """Synchronized step times in default and deterministic mode, interleaved, on one workload."""
    from harness.bench.workload import prepare

    workload = prepare(spec)
    for on in (False, True):  # one untimed step each: lazy initialisation, algorithm choice
        with deterministic_mode(on, spec.device):
            workload.step()
    times = {False: [], True: []}
    for index in range(rounds):
        for on in ((False, True) if index % 2 == 0 else (True, False)):
            with deterministic_mode(on, spec.device):
                start = time.perf_counter()
                workload.step()
                times[on].append(time.perf_counter() - start)
    default, deterministic = statistics.median(times[False]), statistics.median(times[True])
    return {"rounds": rounds, "default_ms": 1e3 * default, "deterministic_ms": 1e3 * deterministic,
            "ratio": deterministic / default if default > 0 else None,
            "default_s": times[False], "deterministic_s": times[True]}


def check(spec: BenchSpec, steps: int, rounds: int, models=(), prediction: dict | None = None,
          timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """The deterministic-mode result of one variant: outcome, operator, cost, bitwise equality, prediction."""
    comparison, timing = run_to_run(spec, steps, True, models, time_rounds=rounds, timeout_s=timeout_s)
    raised = bool(comparison["raised_operator"])
    result = {"outcome": "raised" if raised else ("error" if comparison["error"] else "ran"),
              "operator": comparison["raised_operator"], "error": "" if raised else comparison["error"],
              "message": comparison["error"] if raised else "", "timing": timing,
              "ratio": timing["ratio"] if timing else None, "bitwise_equal": comparison["equal"],
              "run_to_run": comparison}
    result["prediction"] = agreement(spec.device, raised, comparison["error"], prediction)
    return result


def agreement(device: str, raised: bool, error: str, prediction: dict | None) -> str:
    """How the outcome on this device stands against the CPU prediction for CUDA: agrees, disagrees, or why
    it was not checked here."""
    if device != "cuda":
        return "not checked: the prediction is for CUDA"
    if not prediction or prediction.get("raises_on_cuda") is None:
        return "not checked: no prediction"
    if error and not raised:
        return "not checked: the step failed otherwise"
    return "agrees" if prediction["raises_on_cuda"] == raised else "disagrees"
