"""Self-check of the timing: the harness's throughput against a loop that shares no timing code with it.

``python -m harness validate`` (or ``nox -s bench -- --validate``) times a few configurations two ways,
alternating them so the machine's drift hits both:

- the harness: ``prepare`` + ``warm_up`` + ``time_blocks`` (what every results row's ``step_ms`` is);
- an independent loop written here: the model built by the registry, a plain call (and cross-entropy,
  backward and SGD in training), issued back to back, with one timer around the whole block (CUDA events
  on CUDA, perf_counter on CPU) and one synchronization at its end.

It prints the ratio of per-step times and, per configuration, the harness's synchronized latency next to
its throughput, so the launch overhead a synchronized step pays is visible. Targets: within 5% on CPU,
2% on GPU, for every configuration. Writes ``results/validation-DEVICE.json`` (``--out FILE`` elsewhere).
Exit status: 0 every configuration within its target; 1 one is not (a finding); 2 wrong input.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from harness.bench import environment
from harness.bench.timing import block_steps, time_blocks, time_step, warm_up
from harness.bench.workload import prepare
from harness.options import EXIT_CODES_HELP, OptionError, report, require_device, require_positive, require_writable_output
from harness.catalog.registry import create_model
from harness.bench.spec import BenchSpec
from harness.store.schema import RESULTS_ROOT

TARGET = {"cpu": 0.05, "cuda": 0.02}
CONFIGS = {
    "cpu": [("unet3d", (1, 16, 16, 16), 2, "inference"), ("resnet50-3d", (1, 32, 32, 32), 1, "inference"),
            ("unet2d", (1, 64, 64), 1, "train")],
    # The four configurations where a synchronized step and a back-to-back loop disagreed on an H200.
    "cuda": [("unet3d", (1, 64, 64, 64), 1, "inference"), ("unet3d-resnet50", (1, 64, 64, 64), 2, "train"),
             ("unet2d", (1, 224, 224), 4, "train"), ("unet3d-resnet50", (1, 64, 64, 64), 1, "inference")],
}


def independent_loop(spec: BenchSpec):
    """A step function and a block timer that use nothing of the harness's measurement code."""
    device = spec.device
    torch.manual_seed(environment.SEED)
    model = create_model(spec.model).to(device)
    x = torch.randn(spec.full_input_shape, device=device)
    if spec.mode == "inference":
        model.eval()

        def one_step():
            with torch.inference_mode():
                model(x)
    else:
        with torch.no_grad():
            out = model.eval()(x[:1])  # the target's shape and classes, from the model's own output
        model.train()
        target = torch.randint(0, out.shape[1], (spec.batch, *out.shape[2:]), device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()

        def one_step():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x).float(), target).backward()
            optimizer.step()

    def timed_block(steps: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(steps):
                one_step()
            end.record()
            torch.cuda.synchronize()
            return begin.elapsed_time(end) / 1e3
        begin_s = time.perf_counter()
        for _ in range(steps):
            one_step()
        return time.perf_counter() - begin_s

    return one_step, timed_block


def validate(device: str, pairs: int, warmup: int) -> list[dict]:
    rows = []
    for model, shape, batch, mode in CONFIGS[device]:
        spec = BenchSpec(model, shape, batch, mode, device, cudnn_benchmark=device == "cuda", warmup=warmup)
        workload = prepare(spec)
        warm_up(workload.step, warmup, device)
        latency = time_step(workload.step, 0, 5)
        steps = block_steps(min(latency))
        one_step, timed_block = independent_loop(spec)
        timed_block(max(warmup, 1))
        harness_s, independent_s = [], []
        for _ in range(pairs):  # alternate the two methods so drift hits both
            harness_s += [t / steps for t in time_blocks(workload.run, steps, 1, device)]
            independent_s.append(timed_block(steps) / steps)
        row = {"config": spec.label, "block_steps": steps,
               "harness_step_ms": 1e3 * statistics.median(harness_s),
               "independent_step_ms": 1e3 * statistics.median(independent_s),
               "harness_latency_ms": 1e3 * statistics.median(latency)}
        row["ratio"] = row["harness_step_ms"] / row["independent_step_ms"]
        row["latency_over_step"] = row["harness_latency_ms"] / row["harness_step_ms"]
        row["within_target"] = abs(row["ratio"] - 1) <= TARGET[device]
        rows.append(row)
        print(f"{spec.label:50s} harness {row['harness_step_ms']:9.2f} ms/step  independent "
              f"{row['independent_step_ms']:9.2f} ms/step  ratio {row['ratio']:.3f}  (synchronized latency "
              f"{row['harness_latency_ms']:.2f} ms, {row['latency_over_step']:.2f}x the step)", flush=True)
        del workload, one_step, timed_block
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def _require_writable(path: Path) -> None:
    require_writable_output("--out", path, "results/validation-<device>.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness validate", description=__doc__, epilog=EXIT_CODES_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=7, help="alternations of the two methods per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps of each method (CUDA: at least)")
    parser.add_argument("--out", type=Path, help="the JSON written (default results/validation-DEVICE.json)")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_ROOT / f"validation-{args.device}.json"
    try:
        require_device(args.device)
        require_positive("--pairs", args.pairs)
        require_positive("--warmup", args.warmup)
        _require_writable(out)
    except OptionError as error:
        return report(error)
    rows = validate(args.device, args.pairs, args.warmup)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": environment.capture(args.device), "target": TARGET[args.device],
                               "method": "harness time_blocks vs an independent back-to-back loop",
                               "rows": rows}, indent=1, sort_keys=True) + "\n")
    within = sum(r["within_target"] for r in rows)
    print(f"wrote {out}; {within}/{len(rows)} within {TARGET[args.device]:.0%} of the independent loop")
    return 0 if within == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
