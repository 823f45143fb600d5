"""One side of an interleaved comparison: a long-lived process that owns one tree's models.

Speaks JSON lines on stdin/stdout: {"cmd": "facts"}, {"cmd": "prepare", "spec": {...}},
{"cmd": "time", "rounds": N}, {"cmd": "memory"}, {"cmd": "quit"}. Started by harness.evidence.regress.client with the
tree as working directory, so ``reference_models`` is that tree's.
"""
from __future__ import annotations

import json
import os
import sys

import torch


def main() -> None:
    from harness.evidence import facts
    from harness.bench.memory import peak_memory
    from harness.bench.spec import BenchSpec
    from harness.bench.timing import time_step
    from harness.bench.workload import prepare

    from harness.catalog.user import register_reference

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
    for reference in filter(None, os.environ.get("HARNESS_USER_MODELS", "").split("\n")):
        register_reference(reference)  # relative paths resolve in this tree, the worker's working directory
    workload = None
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the models print must not corrupt the protocol
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        try:
            if cmd == "facts":
                reply = {"facts": facts.collect(request.get("models", "*"))}
            elif cmd == "prepare":
                spec = request["spec"]
                workload = None
                workload = prepare(BenchSpec.from_record(spec))
                time_step(workload.step, warmup=request.get("warmup", 2), rounds=0)
                reply = {"ok": True}
            elif cmd == "time":
                reply = {"times": list(time_step(workload.step, warmup=0, rounds=request["rounds"]))}
            elif cmd == "memory":
                # None when this platform gives no reading (kind "unavailable"): the controller says
                # "unknown" then, never 0.
                _, peak_mb, _, kind = peak_memory(workload.step, workload.spec.device)
                reply = {"peak_mb": peak_mb, "kind": kind}
            elif cmd == "quit":
                break
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as error:  # reported to the controller, which decides
            reply = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
