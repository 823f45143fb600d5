"""Deterministic mode: with ``torch.use_deterministic_algorithms(True)`` (and, on CUDA, ``cudnn.deterministic``
and ``CUBLAS_WORKSPACE_CONFIG``), does the training step run or raise (through which operator, in the loss or in
the network), what does it cost in step time, and are two runs then bitwise equal.

A step that raises inside its loss says nothing yet about the network: on CUDA every segmentation step with the
bench's cross-entropy raises there (the reduced NLLLoss kernel sums with atomics). The check then runs the step
again with the same loss computed per element and averaged (harness.repro.steps.loss_variant), which is both what
a user can do about it and what tells the variants apart.

The cost is a ratio measured in one process on one workload, interleaved: each round times one synchronized
step in each mode, in the order ABBA over two rounds, so that drift of the machine (clocks, other load) falls on
both sides alike; the ratio is the median deterministic step over the median default step.
"""
from __future__ import annotations

import statistics
import time

from harness.bench.spec import BenchSpec
from harness.repro.runtorun import WORKER_TIMEOUT_S, run_to_run
from harness.repro.steps import LOSSES, deterministic_mode, loss_variant, training_spec

WAY_OUT = {
    "loss": ("the loss raises, not the network: compute it per element and average it "
             "(F.cross_entropy(out, target, reduction='none').mean()); measured here as `per-element loss`"),
    "network or optimizer": ("an operator of the network raises: replace it by a deterministic one (e.g. a transposed "
                             "convolution instead of trilinear upsampling), or use "
                             "torch.use_deterministic_algorithms(True, warn_only=True) and accept that runs differ"),
}


def interleaved_times(spec: BenchSpec, rounds: int, loss: str = "bench", workload=None) -> dict:
    """Synchronized step times in default and deterministic mode, interleaved, on one workload (``workload``: the
    one the run's steps used, else a fresh one)."""
    from harness.bench.workload import prepare

    with loss_variant(loss):
        workload = workload or prepare(training_spec(spec))
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


def _result(comparison: dict, timing: dict | None, device: str, prediction: dict | None) -> dict:
    raised = bool(comparison["raised_operator"])
    where = comparison.get("raised_in", "") if raised else ""
    return {"loss": LOSSES[comparison.get("loss", "bench")],
            "outcome": "raised" if raised else ("error" if comparison["error"] else "ran"),
            "operator": comparison["raised_operator"], "raised_in": where,
            "error": "" if raised else comparison["error"], "message": comparison["error"] if raised else "",
            "way_out": WAY_OUT.get(where, ""), "timing": timing, "ratio": timing["ratio"] if timing else None,
            "bitwise_equal": comparison["equal"], "run_to_run": comparison,
            "prediction": agreement(device, raised, comparison["error"], prediction)}


def check(spec: BenchSpec, steps: int, rounds: int, models=(), prediction: dict | None = None,
          timeout_s: float = WORKER_TIMEOUT_S, measured: tuple[dict, dict | None] | None = None) -> dict:
    """The deterministic-mode result of one variant: outcome, operator, cost, bitwise equality, prediction; when
    the step raised inside its loss, the same with the per-element loss (``per_element_loss``). ``measured``: the
    deterministic run's (comparison, timing) when harness.repro.runtorun.run_pairs already ran it."""
    comparison, timing = measured or run_to_run(spec, steps, True, models, time_rounds=rounds, timeout_s=timeout_s)
    result = _result(comparison, timing, spec.device, prediction)
    if result["outcome"] == "raised" and result["raised_in"] == "loss":
        comparison, timing = run_to_run(spec, steps, True, models, rounds, timeout_s, loss="per-element")
        result["per_element_loss"] = _result(comparison, timing, spec.device,
                                             (prediction or {}).get("per_element_loss"))
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
