"""``python -m harness pipeline``: is my GPU starved? Augmentation samples per second on one CPU core for nnU-Net
v2's and MONAI's pipelines (and yours), a DataLoader's scaling over workers, the cores each variant needs per GPU
and the expected nnU-Net epoch time on ``--cores`` cores (docs/pipeline.md)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

from harness.options import EXIT_CODES_HELP, EXIT_FINDING, EXIT_NOTHING, EXIT_OK, OptionError, require_positive

PROG = "python -m harness pipeline"
OUT_ROOT = Path("results") / "pipeline"
RUNS_ROOT = Path("results") / "runs"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "The training input pipeline beside the step: samples per second per CPU core of nnU-Net v2's "
            "training transforms (built by nnunetv2's nnUNetTrainer.get_training_transforms) and MONAI's "
            "tutorial chain on synthetic data, the scaling of a torch DataLoader over workers, and for every "
            "3D training row of the committed runs the cores it needs to stay fed and the time of a 250-iteration "
            f"nnU-Net epoch on --cores cores, with the limiting side. Writes {OUT_ROOT}/<id>/pipeline.json.", 110),
        epilog=textwrap.fill(f"{EXIT_CODES_HELP}. For pipeline: 1 when a pipeline raised or could not be measured; "
                             "3 when no pipeline was left to measure.", 110))
    p.add_argument("--pipelines", default="nnunet,monai", metavar="NAMES",
                   help="comma-separated built-in pipelines: nnunet, monai, or none (default nnunet,monai)")
    p.add_argument("--pipeline", action="append", default=[], metavar="REF",
                   help="also measure your pipeline REF (module:function or file.py:function): called with the "
                        "patch (tuple of 3 ints), it returns a zero-argument callable making one sample, or is itself "
                        "that per-sample work")
    p.add_argument("--patches", default="32,64", metavar="EDGES",
                   help="comma-separated cubic patch edges (default 32,64; nnU-Net's 3d_fullres is typically 128)")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks per pipeline and patch (default 5)")
    p.add_argument("--samples", type=int, default=8, help="samples per block (default 8)")
    p.add_argument("--warmup", type=int, default=1, help="untimed samples first (default 1)")
    p.add_argument("--workers", default="", metavar="LIST",
                   help="DataLoader workers to measure scaling at, e.g. 1,2 (default: none; 'all' = 1 to the cores)")
    p.add_argument("--loader-samples", type=int, default=64,
                   help="samples per DataLoader measurement (default 64: with fewer, the workers' start-up dominates)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help=f"CPU cores for augmentation in the epoch estimate (default this machine's, {os.cpu_count()})")
    p.add_argument("--iterations", type=int, default=250, help="iterations per epoch (default nnU-Net's 250)")
    p.add_argument("--runs-root", type=Path, default=RUNS_ROOT, help=f"committed runs to take step times from "
                   f"(default {RUNS_ROOT})")
    p.add_argument("--out", type=Path, default=OUT_ROOT, help=f"where results go (default {OUT_ROOT})")
    p.add_argument("--run-id", help="the result folder's name (default: UTC time)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def _names(text: str) -> list[str]:
    from harness.pipeline.pipelines import BUILTIN

    chosen = [t.strip() for t in text.split(",") if t.strip()]
    if chosen == ["none"]:
        return []
    unknown = [c for c in chosen if c not in BUILTIN]
    if unknown or not chosen:
        raise OptionError(f"--pipelines {text!r}: {', '.join(unknown) or 'nothing'} is not one of "
                          f"{', '.join(BUILTIN)} or none. Way out: e.g. --pipelines nnunet,monai.")
    return list(dict.fromkeys(chosen))


def _ints(option: str, text: str, example: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise OptionError(f"{option} {text!r}: a comma-separated list of positive integers is needed. Way out: "
                          f"e.g. {option} {example}.")
    return list(dict.fromkeys(values))


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    for option, value in (("--blocks", args.blocks), ("--samples", args.samples), ("--cores", args.cores),
                          ("--iterations", args.iterations), ("--loader-samples", args.loader_samples)):
        require_positive(option, value)
    require_positive("--warmup", args.warmup, allow_zero=True)
    patches = _ints("--patches", args.patches, "32,64")
    if max(patches) > 512:
        raise OptionError(f"--patches {args.patches!r}: {max(patches)} is beyond any preprocessed 3D patch. Way out: "
                          "e.g. --patches 64,128 (nnU-Net's 3d_fullres is typically 128).")
    workers = ([] if not args.workers else list(range(1, (os.cpu_count() or 1) + 1)) if args.workers == "all"
               else _ints("--workers", args.workers, "1,2"))
    from harness.pipeline import pipelines as pl

    names = _names(args.pipelines)
    for name in names:
        why = pl.available(name)
        if why:
            raise OptionError(f"--pipelines {name}: {why}, or leave {name} out of --pipelines.")
    chosen = [pl.builtin(n) for n in names] + [pl.user(ref) for ref in args.pipeline]
    if not chosen:
        print(f"{PROG}: nothing to measure (--pipelines none and no --pipeline)", file=sys.stderr)
        return EXIT_NOTHING
    if args.runs_root.exists() and not args.runs_root.is_dir():
        raise OptionError(f"--runs-root {args.runs_root}: it is a file, not a folder. Way out: give the runs folder.")
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if "/" in run_id or run_id in ("", ".", ".."):
        raise OptionError(f"--run-id {run_id!r}: a run id is one folder name. Way out: e.g. --run-id my-check.")
    folder = args.out / run_id
    if folder.exists() and any(folder.iterdir()):
        raise OptionError(f"--run-id {run_id!r}: {folder} already holds a result. Way out: choose another --run-id.")
    from harness.pipeline.budget import step_rows

    steps, steps_note = step_rows(args.runs_root) if args.runs_root.is_dir() else ([], f"no {args.runs_root}")
    return execute(chosen, patches, workers, steps, steps_note, args, folder)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def execute(chosen, patches, workers, steps, steps_note, args, folder: Path) -> int:
    from harness.pipeline.budget import budget_rows
    from harness.pipeline.rates import loader_scaling, per_core

    say = (lambda line: None) if args.quiet else (lambda line: print(f"pipeline: {line}", file=sys.stderr, flush=True))
    load_before = _load_average()
    rates, scaling = [], []
    for pipeline in chosen:
        for edge in patches:
            patch = (edge, edge, edge)
            row = per_core(pipeline, patch, args.blocks, args.samples, args.warmup)
            say(f"{pipeline.name} {row['patch']}: " + (f"{row['samples_per_s']:.2f} samples/s on one core"
                                                      if not row["error"] else row["error"]))
            rates.append(row)
            if workers and not row["error"]:
                scaling += loader_scaling(pipeline, patch, workers, args.loader_samples)
    budget = budget_rows(rates, steps, args.cores, args.iterations)
    findings = [f"{r['pipeline']} {r['patch']}: {r['error']}" for r in rates if r["error"]]
    findings += [f"{r['pipeline']} {r['patch']} {r['workers']} workers: {r['error']}" for r in scaling if r["error"]]
    result = {"id": folder.name, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": _load_average(),
              "rates": rates, "loader_scaling": scaling, "steps_note": steps_note, "budget": budget,
              "findings": findings}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(render(result))
    print(f"{len(findings)} finding(s); written {folder / 'pipeline.json'}")
    return EXIT_FINDING if findings else EXIT_OK


def render(result: dict) -> str:
    lines = [f"per-core rates (1 process, 1 thread; load average before {result['load_average_before']}, after "
             f"{result['load_average_after']}, {result['cpu_count']} cores):",
             f"  {'pipeline':24s} {'patch':10s} {'samples/s':>10s} {'95% interval':>18s} {'ms/sample':>10s}"]
    for r in result["rates"]:
        if r["error"]:
            lines.append(f"  {r['pipeline']:24s} {r['patch']:10s} error: {r['error']}")
        else:
            lines.append(f"  {r['pipeline']:24s} {r['patch']:10s} {r['samples_per_s']:10.2f} "
                         f"{'[%.2f, %.2f]' % (r['ci_low'], r['ci_high']):>18s} {r['ms_per_sample']:10.1f}")
    if result["loader_scaling"]:
        lines += ["", "DataLoader scaling (samples/s):"]
        lines += [f"  {r['pipeline']:24s} {r['patch']:10s} workers {r['workers']:2d}: "
                  + (f"{r['samples_per_s']:.2f}" if not r["error"] else f"error: {r['error']}")
                  for r in result["loader_scaling"]]
    lines += ["", result["steps_note"]]
    if result["budget"]:
        lines.append(f"  {'run':28s} {'model':22s} {'patch':9s} {'b':>2s} {'dev':4s} {'step ms':>9s} {'pipeline':10s} "
                     f"{'cores':>7s} {'epoch s':>9s}  limited by")
        for b in result["budget"]:
            lines.append(f"  {b['run']:28s} {b['model']:22s} {b['patch']:9s} {b['batch']:2d} {b['device']:4s} "
                         f"{b['step_ms']:9.1f} {b['pipeline']:10s} {b['cores_needed']:7.2f} {b['epoch_s']:9.1f}  "
                         f"{b['limited_by']}")
        lines.append(f"  (cores: needed to keep the step fed; epoch: {result['budget'][0]['iterations']} iterations "
                     f"on {result['budget'][0]['cores']} cores)")
    else:
        lines.append("  no step row matches a measured patch: nothing to budget")
    return "\n".join(lines)
