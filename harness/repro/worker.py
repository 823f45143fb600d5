"""``python -m harness.repro.worker REQUEST.json``: k seeded training steps in this fresh process (and, when
asked, the interleaved timing of deterministic mode), written to the request's ``out`` file with torch.save.

The request (JSON): ``spec`` (BenchSpec.record()), ``models`` (--model references to register first),
``steps``, ``deterministic``, ``time_rounds`` (0: no timing), ``out``. The answer: ``losses`` and ``states``
(one per step), ``raised_operator`` and ``error`` (empty when the steps ran), ``timing``.
"""
from __future__ import annotations

import json
import sys
import traceback


def serve(request: dict) -> dict:
    from harness.bench.spec import BenchSpec
    from harness.repro.steps import prepare_cuda_environment, raised_operator, train_steps

    spec = BenchSpec.from_record(request["spec"])
    prepare_cuda_environment(spec.device)
    from harness.catalog.user import register_entry_points, register_reference

    register_entry_points()
    for reference in request.get("models", ()):
        register_reference(reference)
    answer = {"losses": [], "states": [], "raised_operator": "", "error": "", "timing": None}
    try:
        records = train_steps(spec, int(request["steps"]), bool(request["deterministic"]))
    except RuntimeError as error:
        answer["raised_operator"] = raised_operator(error)
        answer["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        return answer
    answer["losses"] = [r.loss for r in records]
    answer["states"] = [r.state for r in records]
    if request.get("time_rounds"):
        from harness.repro.deterministic import interleaved_times

        answer["timing"] = interleaved_times(spec, int(request["time_rounds"]))
    return answer


def main(argv=None) -> int:
    import torch

    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(open(argv[0]).read())
    try:
        answer = serve(request)
    except Exception as error:  # noqa: BLE001 - everything goes back to the parent as data
        answer = {"losses": [], "states": [], "raised_operator": "", "timing": None,
                  "error": f"{type(error).__name__}: {error}".strip().splitlines()[0],
                  "traceback": traceback.format_exc()}
    torch.save(answer, request["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
