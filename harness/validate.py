"""Self-check of the timing: the harness's median against torch.utils.benchmark in the same process.

``python -m harness.validate`` (or ``nox -s bench -- --validate``) times a few configurations with the
harness's loop (a perf_counter around each synchronizing step: what the benchmark suites run through
pytest-benchmark) and with ``torch.utils.benchmark.Timer.blocked_autorange``, alternating the two
methods to share the machine's drift, and prints the ratio of medians. Target: within 5% on CPU,
2% on GPU.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.utils.benchmark as tbench

from . import environment
from .spec import BenchSpec
from .store import RESULTS_ROOT
from .workload import prepare, time_step

TARGET = {"cpu": 0.05, "cuda": 0.02}
CONFIGS = {
    "cpu": [("unet3d", (1, 16, 16, 16), 2, "inference"), ("resnet50-3d", (1, 32, 32, 32), 1, "inference"),
            ("unet2d", (1, 64, 64), 1, "train")],
    "cuda": [("unet3d", (1, 64, 64, 64), 1, "inference"), ("unet3d-resnet50", (1, 64, 64, 64), 1, "inference"),
             ("unet3d", (1, 64, 64, 64), 2, "train")],
}


def validate(device: str, pairs: int, min_run_time: float) -> list[dict]:
    rows = []
    for model, shape, batch, mode in CONFIGS[device]:
        spec = BenchSpec(model, shape, batch, mode, device, cudnn_benchmark=device == "cuda")
        workload = prepare(spec)
        time_step(workload.step, warmup=3, rounds=0)
        timer = tbench.Timer(stmt="step()", globals={"step": workload.step}, num_threads=torch.get_num_threads())
        harness_medians, torch_medians = [], []
        for _ in range(pairs):  # alternate the two methods so drift hits both
            harness_medians.append(statistics.median(time_step(workload.step, warmup=0, rounds=7)))
            torch_medians.append(timer.blocked_autorange(min_run_time=min_run_time).median)
        ratio = statistics.median(harness_medians) / statistics.median(torch_medians)
        rows.append({"config": spec.label, "harness_ms": 1e3 * statistics.median(harness_medians),
                     "torch_benchmark_ms": 1e3 * statistics.median(torch_medians), "ratio": ratio,
                     "within_target": abs(ratio - 1) <= TARGET[device]})
        print(f"{spec.label:55s} harness {rows[-1]['harness_ms']:9.2f} ms  torch.utils.benchmark "
              f"{rows[-1]['torch_benchmark_ms']:9.2f} ms  ratio {ratio:.3f}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.validate", description=__doc__)
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=3, help="alternations of the two methods per config")
    parser.add_argument("--min-run-time", type=float, default=2.0, help="blocked_autorange's min_run_time (s)")
    args = parser.parse_args(argv)
    rows = validate(args.device, args.pairs, args.min_run_time)
    out = RESULTS_ROOT / f"validation-{args.device}.json"
    out.write_text(json.dumps({"environment": environment.capture(args.device), "target": TARGET[args.device],
                               "rows": rows}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}; {sum(r['within_target'] for r in rows)}/{len(rows)} within "
          f"{TARGET[args.device]:.0%} of torch.utils.benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
