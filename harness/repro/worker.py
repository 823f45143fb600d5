"""``python -m harness.repro.worker REQUEST.json``: runs of k seeded training steps in this fresh process (and,
when asked, the interleaved timing of deterministic mode), written to the request's ``out`` file with torch.save.

The request (JSON): ``spec`` (BenchSpec.record()), ``models`` (--model references to register first), ``steps``,
``runs`` (in order, each on a fresh seeded workload: ``deterministic``, ``loss`` (harness.repro.steps.LOSSES),
``time_rounds`` (0: no timing)), ``out``. The answer: ``runs``, one per requested run: ``losses`` and ``states``
(one per step), ``raised_operator``, ``raised_in`` ("loss" or "network or optimizer") and ``error`` (empty when
the steps ran), ``timing``; ``error`` on the answer itself when the process could not start its runs.

Several runs share a process so that the process starts (importing torch takes seconds on a 2-core machine)
and the kernels' first-call costs are paid once: the first run is the fresh process's; the later ones start
from fresh seeded workloads, and the other process of the pair runs the same sequence.
"""
from __future__ import annotations

import json
import sys
import traceback


def one_run(spec, steps: int, run: dict) -> dict:
    from harness.bench.workload import prepare
    from harness.repro.runtorun import empty_answer
    from harness.repro.steps import StepError, raised_operator, train_steps, training_spec

    answer = empty_answer()
    loss, deterministic = run.get("loss", "bench"), bool(run["deterministic"])
    workload = prepare(training_spec(spec))
    try:
        records = train_steps(spec, steps, deterministic, loss, workload)
    except StepError as error:
        answer["raised_operator"] = raised_operator(error)
        answer["raised_in"] = error.where
        answer["error"] = f"RuntimeError: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        return answer
    answer["losses"] = [r.loss for r in records]
    answer["states"] = [r.state for r in records]
    if run.get("time_rounds"):
        from harness.repro.deterministic import interleaved_times

        answer["timing"] = interleaved_times(spec, int(run["time_rounds"]), loss, workload)
    return answer


def serve(request: dict) -> dict:
    from harness.bench.spec import BenchSpec
    from harness.repro.steps import prepare_cuda_environment

    spec = BenchSpec.from_record(request["spec"])
    prepare_cuda_environment(spec.device)
    from harness.catalog.user import register_entry_points, register_reference

    register_entry_points()
    for reference in request.get("models", ()):
        register_reference(reference)
    return {"runs": [one_run(spec, int(request["steps"]), run) for run in request["runs"]], "error": ""}


def main(argv=None) -> int:
    import torch

    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(open(argv[0]).read())
    try:
        answer = serve(request)
    except Exception as error:  # noqa: BLE001 - everything goes back to the parent as data
        answer = {"runs": [], "error": f"{type(error).__name__}: {error}".strip().splitlines()[0],
                  "traceback": traceback.format_exc()}
    torch.save(answer, request["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
