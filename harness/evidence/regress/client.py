"""The controller's side of ``--against``: one worker process per tree (``harness.evidence.regress.worker``),
and the interleaved timing of one configuration on the two."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.bench.spec import BenchSpec


class Worker:
    def __init__(self, tree: Path, threads: int, user_models: list[str] = ()):
        # Passive OpenMP waiting: an idle worker's threads must not spin on the cores the other one times.
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_WAIT_POLICY": "PASSIVE",
               "HARNESS_USER_MODELS": "\n".join(user_models)}
        self.process = subprocess.Popen([sys.executable, "-m", "harness.evidence.regress.worker", str(threads)],
                                        cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker died while answering {request['cmd']}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        try:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait(timeout=60)


def interleaved(old: Worker, new: Worker, spec: BenchSpec, blocks: int, rounds: int) -> dict:
    """One replicate of one configuration: alternating blocks (AB, BA, ...), then peak memory on each side.
    Returns the block ratios new/old and every reading: ``ratios``, ``old_times``, ``new_times``,
    ``old_mem``, ``new_mem``."""
    for worker in (old, new):
        worker.ask(cmd="prepare", spec=spec.record())
    ratios, old_times, new_times = [], [], []
    for block in range(blocks):
        order = (old, new) if block % 2 == 0 else (new, old)
        times = {id(w): w.ask(cmd="time", rounds=rounds)["times"] for w in order}
        old_times += times[id(old)]
        new_times += times[id(new)]
        # The fastest round of a block: noise on a shared machine only ever adds time, so the minimum
        # is the least disturbed estimate of the step's cost (Chen & Revels, "Robust benchmarking in
        # noisy environments", 2016). Medians of all rounds are still reported as old_ms/new_ms.
        ratios.append(min(times[id(new)]) / min(times[id(old)]))
    # A reading can be None (no memory measurement on this platform): kept as None, judged "unknown".
    old_mem = [old.ask(cmd="memory")["peak_mb"] for _ in range(3)]
    new_mem = [new.ask(cmd="memory")["peak_mb"] for _ in range(3)]
    return {"ratios": ratios, "old_times": old_times, "new_times": new_times, "old_mem": old_mem, "new_mem": new_mem}
